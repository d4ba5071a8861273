/**
 * Runs a TypeScript ES module snippet in a separate Node process, optionally as another uid: the
 * "second process trying what an attacker would". The snippet prints its findings as JSON on stdout.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * In the kernel guests the matrix has just built dist/ (pretest:kernel), and the daemon under test
 * runs from it: snippets there import the compiled modules (projectModule) and start without tsx, in
 * 7-11 s under qemu TCG against ~24 s compiling the sources (2026-12-07, lts guest; access.kernel
 * alone starts a dozen). On the host, where dist/ may be stale or absent, they import the sources.
 */
const USE_BUILD = process.env.RINGFENCE_KERNEL !== undefined;

export function runTs(code: string, opts: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv; wrapper?: string[]; timeoutMs?: number } = {}): RunResult {
  // A wrapper (e.g. setpriv, to drop to a uid keeping a capability) runs node as its command.
  const tsx = USE_BUILD && !/\.ts["']/.test(code) ? [] : ['--import', 'tsx'];
  const [cmd, ...args] = [...(opts.wrapper ?? []), process.execPath, ...tsx, '--input-type=module', '-e', code];
  const r = spawnSync(cmd!, args, {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, HOME: '/tmp', TSX_TSCONFIG_PATH: `${PROJECT_ROOT}tsconfig.json`, ...opts.env },
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the snippet and parses the last stdout line as JSON. */
export function runTsJson<T = unknown>(code: string, opts?: Parameters<typeof runTs>[1]): T {
  const r = runTs(code, opts);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`child exited ${r.status}; stdout: ${r.stdout.slice(-500)}; stderr: ${r.stderr.slice(-1500)}`);
  }
}

/** An absolute import specifier for a project file (its build in the guests: USE_BUILD), for use inside snippets. */
export function projectModule(rel: string): string {
  return JSON.stringify(USE_BUILD && rel.endsWith('.ts') ? `${PROJECT_ROOT}dist/${rel.slice(0, -3)}.js` : `${PROJECT_ROOT}${rel}`);
}

export const NOBODY = 65534;
