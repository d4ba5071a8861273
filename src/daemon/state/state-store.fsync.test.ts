// The directories a new state directory was made in are fsynced (power loss on the first start
// would otherwise lose the directory, and the master key created in it). fs/promises' open is
// wrapped to see which directories are opened and synced.
import { mkdtempSync, rmSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const synced = vi.hoisted(() => [] as string[]);
/** Directories whose open fails with EACCES (a parent this uid may write but not read). */
const unreadable = vi.hoisted(() => new Set<string>());
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const open = async (path: string, ...rest: [never?, never?]): Promise<FileHandle> => {
    if (unreadable.has(String(path))) throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
    const fh = await fs.open(path, ...rest);
    const sync = fh.sync.bind(fh);
    fh.sync = async () => {
      synced.push(String(path));
      return sync();
    };
    return fh;
  };
  return { ...fs, open, default: { ...fs, open } };
});

const { parentsOfNewDirs, StateStore } = await import('./state-store.js');

const tmp = mkdtempSync(join(tmpdir(), 'rf-state-fsync-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('StateStore directory durability', () => {
  it('lists the parent of every directory mkdir -p made, deepest first', () => {
    expect(parentsOfNewDirs('/s/a', '/s/a/b/c')).toEqual(['/s/a/b', '/s/a', '/s']);
    expect(parentsOfNewDirs('/s/a', '/s/a')).toEqual(['/s']);
    expect(parentsOfNewDirs('/s', '/s')).toEqual(['/']);
  });

  it('fsyncs the parents of the directories it creates, and none when they exist', async () => {
    const dir = join(tmp, 'a', 'b');
    synced.length = 0;
    const store = await StateStore.open(dir);
    await store.close();
    expect(synced).toEqual(expect.arrayContaining([join(tmp, 'a'), tmp]));

    synced.length = 0;
    await (await StateStore.open(dir)).close();
    expect(synced).not.toContain(tmp);
  });

  it('still starts when a parent cannot be opened to fsync (EACCES: writable, not readable; found by review)', async () => {
    const parent = join(tmp, 'wx-only');
    unreadable.add(parent);
    try {
      await (await StateStore.open(join(parent, 'state'))).close();
    } finally {
      unreadable.clear();
    }
  });
});
