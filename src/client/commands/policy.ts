/**
 * `ringfence policy check`: explains what the policy decides for a uid, an operation and a key.
 * It reads the policy file itself with the same pure evaluator the daemon uses (src/policy), so it
 * needs no daemon and shows the rules to whoever may read the file — the daemon never does.
 */
import { resolve } from 'node:path';
import { KEYLESS_OPERATIONS, OPERATIONS, decide, defaultPolicyPath, isOperation, parsePolicy, readAccounts, readPolicyFile, type Policy } from '../../policy/index.js';
import { CommandError, UsageError } from './args.js';
import { str, type CommandSpec, type Values } from './command.js';

function id(text: string, option: string, names: Map<string, number>): number {
  if (/^\d{1,10}$/.test(text) && Number(text) <= 0xffffffff) return Number(text);
  const n = names.get(text);
  if (n === undefined) throw new UsageError(`${option}: "${text}" is neither a number nor a name in /etc/${option === '--uid' || option === '--daemon-uid' ? 'passwd' : 'group'}`);
  return n;
}

/**
 * The policy as the daemon would load it (readPolicyFile: the directories and symlinks on its path,
 * the file's type, owner, mode and size, checked on the descriptor read). Without --daemon-uid, owners other than root are accepted (a file's with a
 * note), since the daemon accepts them only when it runs as that user.
 */
function loadPolicy(path: string, daemonUid: number | undefined): { policy: Policy | undefined; note?: string } {
  let text: string;
  let owner: number;
  try {
    const file = readPolicyFile(path, daemonUid);
    if (file.state === 'missing') return { policy: undefined };
    if (file.state === 'refused') throw new CommandError(`the daemon would refuse the policy file ${path}: ${file.why}`);
    ({ text, uid: owner } = file);
  } catch (err) {
    if (err instanceof CommandError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new CommandError(`cannot read the policy file ${path} (${code ?? (err as Error).message})`);
  }
  let policy: Policy;
  try {
    policy = parsePolicy(text, readAccounts());
  } catch (err) {
    throw new CommandError(`policy file ${path} is invalid: ${(err as Error).message}`);
  }
  const note = daemonUid === undefined && owner !== 0 ? `note: ${path} belongs to uid ${owner}: the daemon accepts it only if it runs as uid ${owner}` : undefined;
  return note ? { policy, note } : { policy };
}

async function check(ctx: Parameters<CommandSpec['run']>[0], _args: string[], values: Values): Promise<number> {
  const accounts = readAccounts();
  const uidText = str(values, 'uid');
  const op = str(values, 'op');
  if (uidText === undefined) throw new UsageError('policy check: --uid is required');
  if (op === undefined) throw new UsageError('policy check: --op is required');
  if (!isOperation(op)) throw new UsageError(`--op: "${op}" is not an operation (${OPERATIONS.join(', ')})`);
  const key = str(values, 'key');
  if (key === undefined && !KEYLESS_OPERATIONS.has(op)) throw new UsageError(`policy check: --key is required for ${op}`);
  const uid = id(uidText, '--uid', accounts.users);
  const gidText = str(values, 'gid');
  const gid = gidText !== undefined ? id(gidText, '--gid', accounts.groups) : accounts.primaryGid.get(uid);
  if (gid === undefined) throw new UsageError(`uid ${uid} is not in /etc/passwd: give its group with --gid`);
  const daemonUidText = str(values, 'daemon-uid');
  const daemonUid = daemonUidText !== undefined ? id(daemonUidText, '--daemon-uid', accounts.users) : undefined;
  const admins = new Set([0, ...(daemonUid !== undefined ? [daemonUid] : [])]);

  const given = str(values, 'policy') ?? process.env.RINGFENCE_POLICY;
  const path = given ? resolve(given) : defaultPolicyPath(process.env, process.getuid!());
  if (path === undefined) throw new UsageError('no policy file: give --policy FILE (or set RINGFENCE_POLICY)');
  const { policy, note } = loadPolicy(path, daemonUid);
  if (note) ctx.warn(note);
  // On stderr with the other notes: stdout is the one decision line (review by helper-117).
  if (!policy) ctx.warn(`no policy file at ${path}: only root and the daemon's uid may act${daemonUid !== undefined ? '' : ' (--daemon-uid names it)'}`);
  for (const w of policy?.warnings ?? []) ctx.warn(`warning: ${w}`);
  const d = decide(policy, admins, { uid, gid }, op, KEYLESS_OPERATIONS.has(op) ? undefined : key);
  // One key, one operation: a ReEncrypt to another key is three checks (review by helper-142: an
  // "allowed" here was denied by the daemon for want of decrypt on the source).
  if (op === 'reencrypt' && d.allowed) ctx.warn('note: a ReEncrypt needs reencrypt on its source and destination keys, and, when they differ, decrypt on the source: check each');
  const rule = d.allowed && d.by === 'rule' ? d.rule.id : null;
  if (ctx.json) {
    ctx.printJson({ allowed: d.allowed, by: d.allowed ? d.by : null, rule, explanation: d.explanation, policy: path, policyFound: policy !== undefined, uid, gid, operation: op, key: key ?? null });
  } else {
    ctx.print(`${d.allowed ? 'allowed' : 'denied'}: ${d.explanation}`);
  }
  return d.allowed ? 0 : 1;
}

export const policyCommands: CommandSpec[] = [
  {
    name: 'policy check',
    synopsis: 'policy check --uid U [--gid G] --op O [--key K] [--policy FILE] [--daemon-uid U]',
    summary: 'explain what the policy file decides for a caller (no daemon needed; exit 1 when denied)',
    options: ['uid', 'gid', 'op', 'key', 'policy', 'daemon-uid'],
    args: [],
    what: () => 'policy check',
    run: check,
  },
];
