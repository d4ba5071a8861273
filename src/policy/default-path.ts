/** Where the policy lives unless told otherwise: <config dir>/policy.json. Shared by ringfenced and `ringfence policy check`. */
import { isAbsolute, join } from 'node:path';

/** /etc/ringfence/policy.json as root, else $XDG_CONFIG_HOME/ringfence/policy.json or ~/.config/ringfence/policy.json; undefined if neither is set. */
export function defaultPolicyPath(env: NodeJS.ProcessEnv, uid: number): string | undefined {
  if (uid === 0) return '/etc/ringfence/policy.json';
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'ringfence', 'policy.json');
  if (!env.HOME || !isAbsolute(env.HOME)) return undefined;
  return join(env.HOME, '.config', 'ringfence', 'policy.json');
}
