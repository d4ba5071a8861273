/**
 * PR_SET_DUMPABLE through the FFI, checked the way an attacker would meet it: a second process of
 * the same uid tries to read the first one's /proc/<pid>/environ (ptrace access, as for mem).
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../test/support/run-ts.js';

const UID = 4321;
const asRoot = process.getuid?.() === 0;

/** A node process of uid UID that optionally makes itself undumpable, reports, then waits. */
async function target(undumpable: boolean) {
  const code = `
    import { isDumpable, setDumpable } from './native-ffi/dumpable.ts';
    if (${undumpable}) setDumpable(false);
    console.log(JSON.stringify({ dumpable: isDumpable() }));
    setTimeout(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, HOME: '/tmp', TSX_TSCONFIG_PATH: `${PROJECT_ROOT}tsconfig.json` },
    ...(asRoot ? { uid: UID, gid: UID } : {}),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { pid: child.pid!, report: JSON.parse(line.toString()) as { dumpable: boolean }, kill: () => child.kill('SIGKILL') };
}

/** What a process of the same uid gets when it reads the target's environ. */
function readEnvironAsSameUid(pid: number): string {
  const r = spawnSync(process.execPath, ['-e', `try { require('fs').readFileSync('/proc/${pid}/environ'); console.log('read') } catch (e) { console.log(e.code) }`], {
    encoding: 'utf8',
    ...(asRoot ? { uid: UID, gid: UID } : {}),
  });
  return r.stdout.trim();
}

describe('PR_SET_DUMPABLE', () => {
  it('a process that set itself undumpable is closed to its own uid; one that did not is open', async () => {
    const open = await target(false);
    const closed = await target(true);
    try {
      expect(open.report.dumpable).toBe(true);
      expect(closed.report.dumpable).toBe(false);
      expect(readEnvironAsSameUid(open.pid)).toBe('read');
      expect(readEnvironAsSameUid(closed.pid)).toBe('EACCES');
    } finally {
      open.kill();
      closed.kill();
    }
  }, 60_000);
});
