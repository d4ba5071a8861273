/**
 * The socket's mode is checked, never set (review by helper-97): setSocketMode lstat-ed the path,
 * then chmod-ed it, and chmod follows symlinks, so a user who could write the socket's directory
 * and renamed a symlink over the socket in between had the root daemon chmod any file (say
 * /etc/shadow) to socketMode. Here node:fs/promises' lstat makes that swap right after it looks,
 * the moment the race needs; the directory check (socket.test.ts) keeps such users out as well.
 */
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const swap = vi.hoisted(() => ({ path: undefined as string | undefined, victim: '' }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    lstat: async (path: string) => {
      const st = await real.lstat(path);
      if (path === swap.path) {
        swap.path = undefined;
        const { renameSync: rename, symlinkSync: symlink } = await import('node:fs');
        symlink(swap.victim, `${path}.evil`);
        rename(`${path}.evil`, path); // the attacker's move, just after the daemon looked
      }
      return st;
    },
  };
});

const { openListener } = await import('./identity/listener.js');

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-socket-mode-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the socket mode after listen', () => {
  it('a symlink swapped in for the socket after it was looked at never gets the mode of the socket', async () => {
    const victim = join(tmp, 'shadow');
    writeFileSync(victim, 'secret');
    chmodSync(victim, 0o600);
    const path = join(tmp, 'rf.sock');
    // The first lstat of the path (prepareSocketPath: nothing there yet) throws ENOENT before the
    // swap; the next is the one after bind.
    Object.assign(swap, { victim, path });
    const l: unknown = await openListener({ socket: path, socketMode: 0o666, env: {}, log: () => {}, onConnection: (s) => s.destroy() }).catch((e: unknown) => e);
    if (!(l instanceof Error)) await new Promise<void>((r) => (l as Awaited<ReturnType<typeof openListener>>).server.close(() => r()));
    expect(swap.path).toBeUndefined(); // the swap happened
    expect(statSync(victim).mode & 0o7777).toBe(0o600);
  });
});
