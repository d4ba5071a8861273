/**
 * The lock file on a full or read-only file system (review by helper-126): after a clean stop
 * emptied it, writing the pid needs a block; ENOSPC there kept the daemon from starting, though
 * it could serve every key it has without writing. A read-only mount (EROFS) is taken read-only,
 * as a lock file of another user is.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const fault = vi.hoisted(() => ({ write: undefined as string | undefined, openRw: undefined as string | undefined }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open = (async (path: string, flags: number, mode?: number) => {
    const { constants } = await import('node:fs');
    if (fault.openRw && (flags & constants.O_RDWR) !== 0) throw Object.assign(new Error(`${fault.openRw}: ${path}`), { code: fault.openRw });
    const handle = await real.open(path, flags, mode);
    const write = handle.write.bind(handle);
    return Object.assign(handle, {
      write: (...a: unknown[]) => (fault.write ? Promise.reject(Object.assign(new Error(`${fault.write}: write`), { code: fault.write })) : (write as (...x: unknown[]) => Promise<unknown>)(...a)),
    });
  }) as typeof real.open;
  return { ...real, open, default: { ...real, open } };
});

const { takePidLock } = await import('./pid-lock.js');
const refuse = (pid: number | undefined) => `held by ${pid}`;
const dirs: string[] = [];
const lockPath = () => {
  const d = mkdtempSync(join(tmpdir(), 'rf-pidlock-'));
  dirs.push(d);
  return join(d, 'daemon.lock');
};
afterEach(() => {
  fault.write = fault.openRw = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('takePidLock', () => {
  it('writes the pid, and empties the file at release', async () => {
    const path = lockPath();
    const lock = await takePidLock(path, { refuse });
    expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\n`);
    await expect(takePidLock(path, { refuse })).rejects.toThrow(`held by ${process.pid}`);
    await lock.release();
    expect(readFileSync(path, 'utf8')).toBe('');
  });

  it.each(['ENOSPC', 'EDQUOT'])('takes the lock when writing the pid fails with %s, and says so', async (code) => {
    const path = lockPath();
    await (await takePidLock(path, { refuse })).release();
    fault.write = code;
    const log = vi.fn();
    const lock = await takePidLock(path, { refuse, log });
    expect(log).toHaveBeenCalledWith('the lock file holds no pid: the file system is full', { path, code });
    fault.write = undefined;
    await expect(takePidLock(path, { refuse })).rejects.toThrow('held by undefined'); // still locked
    await lock.release();
  });

  it('another write error still fails the start', async () => {
    const path = lockPath();
    fault.write = 'EIO';
    await expect(takePidLock(path, { refuse })).rejects.toMatchObject({ code: 'EIO' });
  });

  it('on a read-only file system (EROFS) takes the existing file read-only', async () => {
    const path = lockPath();
    await (await takePidLock(path, { refuse })).release();
    fault.openRw = 'EROFS';
    const lock = await takePidLock(path, { refuse });
    fault.openRw = undefined;
    await expect(takePidLock(path, { refuse })).rejects.toThrow('held by undefined');
    await lock.release();
  });
});
