import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, lchownSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { decodeKey, loadOrCreateMasterKey, MASTER_KEY_FILE } from './master-key.js';

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-master-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => {
  vi.unstubAllEnvs();
});

let n = 0;
/** A state dir holding master.key with these contents (mode 0600). */
function stateDirWith(contents?: Buffer | string, mode = 0o600): string {
  const dir = join(tmp, `s${n++}`);
  mkdirSync(dir, { mode: 0o700 });
  if (contents !== undefined) {
    writeFileSync(join(dir, MASTER_KEY_FILE), contents);
    chmodSync(join(dir, MASTER_KEY_FILE), mode);
  }
  return dir;
}

// No test may pick up a CREDENTIALS_DIRECTORY from the environment it runs in.
const load = (stateDir: string, extra: { credentialsDirectory?: string; requiredBy?: string; log?: (m: string, f?: object) => void } = {}) =>
  loadOrCreateMasterKey({ credentialsDirectory: '', ...extra, stateDir });

const KEY = randomBytes(32);

describe('loadOrCreateMasterKey: accepted formats', () => {
  const keyEndingInNewline = Buffer.concat([randomBytes(31), Buffer.from('\n')]);
  const cases: [string, Buffer | string, Buffer][] = [
    ['32 raw bytes', KEY, KEY],
    ['32 raw bytes and a newline', Buffer.concat([KEY, Buffer.from('\n')]), KEY],
    ['32 raw bytes, the last one 0x0a', keyEndingInNewline, keyEndingInNewline],
    ['lowercase hex', KEY.toString('hex'), KEY],
    ['uppercase hex and a newline', `${KEY.toString('hex').toUpperCase()}\n`, KEY],
    ['base64', KEY.toString('base64'), KEY],
    ['base64 and a newline', `${KEY.toString('base64')}\n`, KEY],
  ];
  for (const [name, contents, expected] of cases) {
    it(name, async () => {
      const dir = stateDirWith(contents);
      const key = await load(dir);
      expect(key).toEqual({ material: expected, source: 'state-dir', path: join(dir, MASTER_KEY_FILE), created: false });
    });
  }

  it('decodes known vectors (all zero, all 0xff)', () => {
    expect(decodeKey(Buffer.from(`${'0'.repeat(64)}\n`))).toEqual(Buffer.alloc(32));
    expect(decodeKey(Buffer.from('f'.repeat(64)))).toEqual(Buffer.alloc(32, 0xff));
    expect(decodeKey(Buffer.from(`${'/'.repeat(42)}8=`))).toEqual(Buffer.alloc(32, 0xff));
    expect(decodeKey(Buffer.from(`${'A'.repeat(43)}=`))).toEqual(Buffer.alloc(32));
  });
});

describe('loadOrCreateMasterKey: rejected contents', () => {
  const hex = KEY.toString('hex');
  const b64 = KEY.toString('base64');
  const cases: [string, Buffer | string][] = [
    ['an empty file', ''],
    ['31 bytes', randomBytes(31)],
    ['33 bytes not ending in a newline', Buffer.concat([KEY, Buffer.from('x')])],
    ['34 bytes', randomBytes(34)],
    ['63 hex digits and a newline', `${hex.slice(1)}\n`],
    ['64 characters with a non-hex one', `${hex.slice(1)}g`],
    ['hex and two newlines', `${hex}\n\n`],
    ['hex and CRLF', `${hex}\r\n`],
    ['hex with 0x', `0x${hex.slice(2)}`],
    ['base64 without padding', b64.slice(0, 43)],
    ['base64url', `${'-'.repeat(43)}=`],
    ['base64 with non-zero spare bits', `${'A'.repeat(42)}B=`],
    ['base64 of 33 bytes', randomBytes(33).toString('base64')],
    ['a long text file', 'correct horse battery staple\n'.repeat(20)],
  ];
  for (const [name, contents] of cases) {
    it(name, async () => {
      const dir = stateDirWith(contents);
      const err = (await load(dir).then(() => undefined, (e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/is not in an accepted format .*accepted: exactly 32 raw bytes, 64 hex digits, or base64 of 32 bytes/);
      // The message never echoes the contents.
      const text = Buffer.from(contents).toString('latin1');
      if (text.length >= 8) expect(err.message).not.toContain(text.slice(0, 8));
      // And the file is left for the operator to fix.
      expect(readFileSync(join(dir, MASTER_KEY_FILE))).toEqual(Buffer.from(contents));
    });
  }

  it('refuses a symlink to a missing file, in the state dir or as the credential, changing nothing (review by helper-91: start-up looped making keys)', async () => {
    const dir = stateDirWith();
    symlinkSync('/nonexistent/ringfence-volume/master.key', join(dir, MASTER_KEY_FILE));
    const started = load(dir);
    const outcome = await Promise.race([started.then(() => 'loaded', (e: Error) => e.message), new Promise((r) => setTimeout(() => r('still running after 5 s'), 5000))]);
    expect(outcome).toBe(`master key ${join(dir, MASTER_KEY_FILE)} is a symlink to /nonexistent/ringfence-volume/master.key, which does not exist (a volume not mounted yet?); nothing was changed`);
    expect(readdirSync(dir)).toEqual([MASTER_KEY_FILE]);
    // As the credential: not taken for an absent one (which would fall back to the state dir).
    const creds = stateDirWith();
    symlinkSync('/nonexistent/creds/master.key', join(creds, MASTER_KEY_FILE));
    await expect(load(stateDirWith(KEY), { credentialsDirectory: creds })).rejects.toThrow(/is a symlink to \/nonexistent\/creds\/master\.key, which does not exist/);
  });

  it('refuses a directory in place of the file', async () => {
    const dir = stateDirWith();
    mkdirSync(join(dir, MASTER_KEY_FILE));
    await expect(load(dir)).rejects.toThrow(/master\.key is not a regular file/);
  });
});

describe('loadOrCreateMasterKey: creation', () => {
  it('creates a 32-byte 0600 key file once, logging where without the bytes', async () => {
    const dir = join(tmp, 'new', 'state'); // missing parents too
    const logs: [string, object | undefined][] = [];
    const first = await load(dir, { log: (m, f) => logs.push([m, f]) });
    const path = join(dir, MASTER_KEY_FILE);
    expect(first).toMatchObject({ source: 'state-dir', path, created: true });
    expect(first.material).toHaveLength(32);
    expect(first.material.equals(Buffer.alloc(32))).toBe(false);
    expect(readFileSync(path)).toEqual(first.material);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(logs).toEqual([[`created a new master key at ${path}; back it up together with the state directory, without it the keys saved there cannot be recovered`, { path }]]);

    const second = await load(dir, { log: (m, f) => logs.push([m, f]) });
    expect(second).toEqual({ material: first.material, source: 'state-dir', path, created: false });
    expect(logs).toHaveLength(1);
  });

  it('removes the temp file of a process that died while creating a key', async () => {
    const dir = stateDirWith();
    writeFileSync(join(dir, `${MASTER_KEY_FILE}.tmp-4194304-0`), randomBytes(32)); // above pid_max
    const live = join(dir, `${MASTER_KEY_FILE}.tmp-1-0`); // init is alive: not ours to remove
    writeFileSync(live, '');
    await load(dir);
    expect(readdirSync(dir).sort()).toEqual([MASTER_KEY_FILE, `${MASTER_KEY_FILE}.tmp-1-0`]);
  });

  it("keeps an operator's file that only starts like a temp (master.key.tmp-backup): it may be a copy of the key (review by helper-177)", async () => {
    const dir = stateDirWith();
    const copies = [`${MASTER_KEY_FILE}.tmp-backup`, `${MASTER_KEY_FILE}.tmp-2024-01-01.bak`, `${MASTER_KEY_FILE}.tmp-20240101`];
    for (const name of copies) writeFileSync(join(dir, name), randomBytes(32), { mode: 0o600 });
    await load(dir); // creates master.key
    await load(dir); // finds it
    expect(readdirSync(dir).sort()).toEqual([MASTER_KEY_FILE, ...copies].sort());
  });

  it('removes, on a start that finds master.key, a temp left linked to it by a crash between link and unlink (found by review)', async () => {
    const dir = stateDirWith();
    const first = await load(dir);
    const leftover = join(dir, `${MASTER_KEY_FILE}.tmp-4194304-0`);
    linkSync(join(dir, MASTER_KEY_FILE), leftover);
    const again = await load(dir);
    expect(again.material).toEqual(first.material);
    expect(readdirSync(dir)).toEqual([MASTER_KEY_FILE]);
    expect(statSync(join(dir, MASTER_KEY_FILE)).nlink).toBe(1);
  });

  it('keeps a leftover temp while master.key is missing: it may be the last copy of the key the state needs (found by review)', async () => {
    const dir = stateDirWith();
    const leftover = join(dir, `${MASTER_KEY_FILE}.tmp-4194304-0`);
    writeFileSync(leftover, randomBytes(32), { mode: 0o600 });
    await expect(load(dir, { requiredBy: 'state.json holds 2 keys' })).rejects.toThrow(/is missing/);
    expect(readdirSync(dir)).toEqual([`${MASTER_KEY_FILE}.tmp-4194304-0`]);
  });

  it("a temp named with this process's own pid is an earlier process's (pid 1 in a container): removed, and creation succeeds (found by review)", async () => {
    const dir = stateDirWith();
    for (let i = 0; i < 64; i++) writeFileSync(join(dir, `${MASTER_KEY_FILE}.tmp-${process.pid}-${i}`), randomBytes(32));
    const key = await load(dir);
    expect(key.created).toBe(true);
    expect(readdirSync(dir)).toEqual([MASTER_KEY_FILE]);
  });

  it('concurrent first starts agree on one key, and nobody reads a partial one', async () => {
    const dir = stateDirWith();
    const keys = await Promise.all(Array.from({ length: 8 }, () => load(dir)));
    expect(keys.filter((k) => k.created)).toHaveLength(1);
    for (const k of keys) expect(k.material).toEqual(keys[0]!.material);
  });
});

describe('loadOrCreateMasterKey: permissions', () => {
  for (const mode of [0o640, 0o604, 0o620, 0o660]) {
    it(`refuses a state-dir key with mode 0${mode.toString(8)}`, async () => {
      const dir = stateDirWith(KEY, mode);
      const path = join(dir, MASTER_KEY_FILE);
      await expect(load(dir)).rejects.toThrow(`master key ${path} is accessible by group or others (mode 0${mode.toString(8)}); run chmod 600 ${path}`);
    });
  }

  it('accepts 0400', async () => {
    expect((await load(stateDirWith(KEY, 0o400))).material).toEqual(KEY);
  });

  it('refuses a 0600 state-dir key owned by another uid (review helper-47)', async () => {
    const dir = stateDirWith(KEY, 0o600);
    const path = join(dir, MASTER_KEY_FILE);
    chownSync(path, 4242, 4242); // tests run as root
    await expect(load(dir)).rejects.toThrow(`master key ${path} is owned by uid 4242, not by the daemon's uid 0; run chown 0 ${path} if that is right`);
  });
});

describe('loadOrCreateMasterKey: systemd credentials', () => {
  const credDir = stateDirWith(); // reused as a credentials directory
  const credKey = randomBytes(32);
  writeFileSync(join(credDir, MASTER_KEY_FILE), credKey.toString('hex'));
  chmodSync(join(credDir, MASTER_KEY_FILE), 0o400);

  it('prefers the credential over the state-dir key, creating nothing', async () => {
    const stateDir = stateDirWith(KEY);
    const key = await load(stateDir, { credentialsDirectory: credDir });
    expect(key).toEqual({ material: credKey, source: 'credentials', path: join(credDir, MASTER_KEY_FILE), created: false });
    const empty = stateDirWith();
    await load(empty, { credentialsDirectory: credDir });
    expect(() => statSync(join(empty, MASTER_KEY_FILE))).toThrow(/ENOENT/);
  });

  it('reads $CREDENTIALS_DIRECTORY by default', async () => {
    vi.stubEnv('CREDENTIALS_DIRECTORY', credDir);
    const key = await loadOrCreateMasterKey({ stateDir: stateDirWith(KEY) });
    expect(key.source).toBe('credentials');
    expect(key.material).toEqual(credKey);
  });

  it('falls back to the state dir, saying so, when the credential is absent', async () => {
    const otherCreds = stateDirWith();
    const logs: [string, object | undefined][] = [];
    const key = await load(stateDirWith(KEY), { credentialsDirectory: otherCreds, log: (m, f) => logs.push([m, f]) });
    expect(key.source).toBe('state-dir');
    expect(key.material).toEqual(KEY);
    expect(logs).toEqual([['no master.key credential in the credentials directory; using the state directory', { credentialsDirectory: otherCreds }]]);
  });

  it('validates the credential the same way', async () => {
    const bad = stateDirWith('not a key');
    await expect(load(stateDirWith(KEY), { credentialsDirectory: bad })).rejects.toThrow(/is not in an accepted format/);
  });
});

describe('loadOrCreateMasterKey: keys already saved', () => {
  it('refuses to replace a missing master.key when the state holds keys, and writes nothing', async () => {
    const dir = stateDirWith();
    await expect(load(dir, { requiredBy: '/x/state.json holds 2 keys' })).rejects.toThrow(
      /master\.key is missing, but \/x\/state\.json holds 2 keys wrapped by it: restore master\.key from your backup/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('uses an existing master.key as usual', async () => {
    const dir = stateDirWith(KEY);
    expect((await load(dir, { requiredBy: 'state.json holds 1 keys' })).material).toEqual(KEY);
  });
});

describe('loadOrCreateMasterKey: the path to the key (review by helper-203)', () => {
  /** A state dir whose master.key is a symlink to <shared>/master.key, `shared` made by `prepare`. */
  function linkedKey(prepare: (shared: string) => void): { dir: string; path: string; shared: string; target: string } {
    const shared = join(tmp, `shared${n++}`);
    mkdirSync(shared, { mode: 0o700 });
    const target = join(shared, MASTER_KEY_FILE);
    writeFileSync(target, KEY, { mode: 0o600 });
    const dir = stateDirWith();
    symlinkSync(target, join(dir, MASTER_KEY_FILE));
    prepare(shared);
    return { dir, path: join(dir, MASTER_KEY_FILE), shared, target };
  }

  it('reads a symlinked master.key whose target only root or the daemon may change', async () => {
    const { dir } = linkedKey(() => {});
    expect((await load(dir)).material).toEqual(KEY);
  });

  const refusals: [string, (shared: string) => void, (shared: string) => string][] = [
    ['writable by every user', (d) => chmodSync(d, 0o777), (d) => `the directory ${d} on its path is writable by every user, who could replace or delete the master key (chmod o-w ${d})`],
    ['writable by its group', (d) => chmodSync(d, 0o770), (d) => `the directory ${d} on its path is writable by its group, who could replace or delete the master key (chmod g-w ${d})`],
    ['owned by another uid', (d) => chownSync(d, 4242, 4242), (d) => `the directory ${d} on its path belongs to uid 4242, not to root or the daemon's uid 0 (chown root ${d})`],
  ];
  for (const [name, prepare, why] of refusals) {
    it(`refuses a symlinked master.key whose target lies in a directory ${name}, changing nothing`, async () => {
      const { dir, path, shared, target } = linkedKey(prepare);
      await expect(load(dir)).rejects.toThrow(`master key ${path} is refused: ${why(shared)}; nothing was changed`);
      expect(readdirSync(dir)).toEqual([MASTER_KEY_FILE]);
      expect(readFileSync(target)).toEqual(KEY);
    });
  }

  it("refuses a symlink of another uid's on the way to the target", async () => {
    const { dir, path, shared } = linkedKey(() => {});
    const hop = join(tmp, `hop${n++}`);
    symlinkSync(shared, hop);
    lchownSync(hop, 4242, 4242);
    rmSync(path);
    symlinkSync(join(hop, MASTER_KEY_FILE), path);
    await expect(load(dir)).rejects.toThrow(`master key ${path} is refused: the symlink ${hop} on its path belongs to uid 4242, not to root or the daemon's uid 0 (chown -h root ${hop}); nothing was changed`);
  });

  it('refuses a FIFO in place of the key without waiting for a writer', async () => {
    const dir = stateDirWith();
    const path = join(dir, MASTER_KEY_FILE);
    execFileSync('mkfifo', ['-m', '600', path]);
    try {
      const started = load(dir);
      const outcome = await Promise.race([started.then(() => 'loaded', (e: Error) => e.message), new Promise((r) => setTimeout(() => r('still running after 5 s'), 5000))]);
      expect(outcome).toBe(`master key ${path} is not a regular file`);
    } finally {
      // Lets an open that blocks (the old code) return, so the worker can end.
      try {
        closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader: nothing is blocked
      }
    }
  });

  describe('as a systemd credential', () => {
    it('refuses a credentials directory others may write (a CREDENTIALS_DIRECTORY systemd did not make)', async () => {
      const creds = stateDirWith(KEY, 0o400);
      chmodSync(creds, 0o777);
      const path = join(creds, MASTER_KEY_FILE);
      await expect(load(stateDirWith(), { credentialsDirectory: creds })).rejects.toThrow(
        `master key ${path} is refused: the directory ${creds} on its path is writable by every user, who could replace or delete the master key (chmod o-w ${creds}); nothing was changed`,
      );
    });

    it('refuses a credential file another uid owns or its group may write; accepts one readable by its group (an ACL or group systemd set)', async () => {
      const creds = stateDirWith(KEY, 0o400);
      const path = join(creds, MASTER_KEY_FILE);
      chownSync(path, 4242, 4242);
      await expect(load(stateDirWith(), { credentialsDirectory: creds })).rejects.toThrow(
        `master key ${path} is refused: it belongs to uid 4242, not to root or the daemon's uid 0 (chown it); nothing was changed`,
      );
      chownSync(path, 0, 0);
      chmodSync(path, 0o460);
      await expect(load(stateDirWith(), { credentialsDirectory: creds })).rejects.toThrow(`master key ${path} is refused: it is writable by its group (chmod g-w it)`);
      chmodSync(path, 0o440);
      expect((await load(stateDirWith(), { credentialsDirectory: creds })).material).toEqual(KEY);
    });
  });
});

describe('loadOrCreateMasterKey: leftover temps in credentials mode (review by helper-203)', () => {
  const credKey = randomBytes(32);
  const creds = stateDirWith(credKey.toString('base64'), 0o400);
  const dead = `${MASTER_KEY_FILE}.tmp-4194304-0`; // above pid_max

  it('removes a temp holding the credential\'s key after master.key moved into the credential, keeping the operator\'s copies and a live process\'s temp', async () => {
    // An interrupted creation left a second name of master.key; the operator then moved master.key
    // into the credential and removed it (docs/operations.md): a plain copy of the key stayed.
    const dir = stateDirWith(credKey);
    linkSync(join(dir, MASTER_KEY_FILE), join(dir, dead));
    rmSync(join(dir, MASTER_KEY_FILE));
    const kept = [`${MASTER_KEY_FILE}.tmp-backup`, `${MASTER_KEY_FILE}.tmp-1-0`]; // init is alive
    for (const name of kept) writeFileSync(join(dir, name), credKey, { mode: 0o600 });
    const logs: [string, object | undefined][] = [];
    const key = await load(dir, { credentialsDirectory: creds, requiredBy: 'state.json holds 2 keys', log: (m, f) => logs.push([m, f]) });
    expect(key).toMatchObject({ material: credKey, source: 'credentials' });
    expect(readdirSync(dir).sort()).toEqual(kept.sort());
    const path = join(dir, dead);
    expect(logs).toEqual([[`removed ${path}, a copy of the master key left by an interrupted creation in the state directory`, { path }]]);
  });

  it('removes any dead temp while master.key is in the state directory, as state-dir mode does', async () => {
    const dir = stateDirWith(KEY);
    writeFileSync(join(dir, dead), randomBytes(32), { mode: 0o600 });
    await load(dir, { credentialsDirectory: creds });
    expect(readdirSync(dir)).toEqual([MASTER_KEY_FILE]);
  });

  it('keeps, and names in the log, a temp of another key while master.key is missing: it may be the last copy of that key', async () => {
    const dir = stateDirWith();
    writeFileSync(join(dir, dead), randomBytes(32), { mode: 0o600 });
    const logs: string[] = [];
    await load(dir, { credentialsDirectory: creds, log: (m) => logs.push(m) });
    expect(readdirSync(dir)).toEqual([dead]);
    expect(logs).toEqual([
      `kept ${join(dir, dead)}, left by an interrupted master-key creation: it is not the credential's key and may be the last copy of an earlier one; remove it once you know no keys need it`,
    ]);
  });
});
