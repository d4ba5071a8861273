import { chmodSync, chownSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { projectModule, runTs } from '../../../test/support/run-ts.js';
import { parseAccounts } from '../../policy/index.js';
import { PolicyStore } from './policy-store.js';
import { Access, permissionDenied } from './access.js';
import { ErrorReason, Status } from '../api/errors.js';

const accounts = () => parseAccounts('app:x:1000:1000::/:/bin/sh\n', 'app:x:1000:\n');
const grant = (op: string, keys = ['k-*']) => JSON.stringify({ rules: [{ id: 'r', principals: ['user:app'], operations: [op], keys }] });
const app = { uid: 1000, gid: 1000, pid: 1, groups: [] };

function setup(initial?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'rf-policy-'));
  const path = join(dir, 'policy.json');
  if (initial !== undefined) writeFileSync(path, initial);
  const logs: { level: string; msg: string }[] = [];
  const store = new PolicyStore({ path, admins: new Set([0, 999]), log: (level, msg) => logs.push({ level, msg }), accounts, debounceMs: 20 });
  return { dir, path, logs, store };
}

describe('PolicyStore', () => {
  it('without a file: only administrators, said plainly', () => {
    const { store, logs } = setup();
    store.load();
    expect(store.decide({ uid: 0, gid: 0 }, 'create', 'x').allowed).toBe(true);
    expect(store.decide({ uid: 999, gid: 999 }, 'encrypt', 'x').allowed).toBe(true);
    expect(store.decide(app, 'hash').allowed).toBe(false);
    expect(logs).toContainEqual({ level: 'warn', msg: expect.stringMatching(/no policy file at .*only root and the daemon's uid \(0, 999\)/) });
  });

  it('a revocation made after load() (while keys load) is in force as soon as watch() returns, before the daemon serves (found by review)', () => {
    const { store, path, logs } = setup(grant('encrypt'));
    store.load();
    writeFileSync(path, JSON.stringify({ rules: [] }));
    store.watch();
    try {
      expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(false);
      expect(logs.filter((l) => l.msg.startsWith('policy loaded'))).toHaveLength(2);
    } finally {
      store.close();
    }
  });

  it('watch() on an unchanged file logs nothing more', () => {
    const { store, logs } = setup(grant('encrypt'));
    store.load();
    const before = logs.length;
    store.watch();
    store.close();
    expect(logs).toHaveLength(before);
  });

  it('refuses to start on an invalid file, naming the field', () => {
    const { store, path } = setup(grant('encrpyt'));
    expect(() => store.load()).toThrow(`policy file ${path}: rules[0].operations[0]: "encrpyt" is not an operation`);
  });

  it('after an account named in it is removed, a reload revokes that uid and later edits still apply (found by review)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-policy-'));
    const path = join(dir, 'policy.json');
    const rules = (extra: object[] = []) => JSON.stringify({ rules: [{ id: 'bob', principals: ['user:bob'], operations: ['decrypt'], keys: ['payroll-*'] }, ...extra] });
    writeFileSync(path, rules([{ id: 'carol', principals: ['uid:1002'], operations: ['decrypt'], keys: ['payroll-*'] }]));
    let passwd = 'bob:x:1001:1001::/:/bin/sh\n';
    const logs: { level: string; msg: string }[] = [];
    const store = new PolicyStore({ path, admins: new Set([0]), log: (level, msg) => logs.push({ level, msg }), accounts: () => parseAccounts(passwd, ''), debounceMs: 20 });
    store.load();
    const may = (uid: number) => store.decide({ uid, gid: uid }, 'decrypt', 'payroll-x').allowed;
    expect([may(1001), may(1002)]).toEqual([true, true]);
    // userdel bob; useradd eve (who gets the uid just freed); SIGHUP.
    passwd = 'eve:x:1001:1001::/:/bin/sh\n';
    expect(store.reload('SIGHUP')).toBe(true);
    expect(may(1001)).toBe(false);
    expect(logs).toContainEqual({ level: 'warn', msg: `policy file ${path}: rules[0].principals[0]: no user named "bob" in /etc/passwd; it matches nobody until it exists and the policy is reloaded` });
    // An edit revoking carol applies although "user:bob" is still there.
    writeFileSync(path, rules());
    expect(store.reload('SIGHUP')).toBe(true);
    expect(may(1002)).toBe(false);
    // A fresh start on that file works.
    const fresh = new PolicyStore({ path, admins: new Set([0]), log: () => {}, accounts: () => parseAccounts(passwd, ''), debounceMs: 20 });
    fresh.load();
    fresh.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a world-writable file', () => {
    const { store, path } = setup(grant('encrypt'));
    chmodSync(path, 0o666);
    expect(() => store.load()).toThrow(`policy file ${path}: it is writable by every user (chmod o-w it)`);
    chmodSync(path, 0o644);
    expect(() => store.load()).not.toThrow();
  });

  it('refuses a group-writable file and one owned by another user (the tests run as root)', () => {
    const { store, path } = setup(grant('encrypt'));
    chmodSync(path, 0o664);
    expect(() => store.load()).toThrow(`policy file ${path}: it is writable by its group (chmod g-w it)`);
    chmodSync(path, 0o644);
    chownSync(path, 12345, 0);
    expect(() => store.load()).toThrow(`policy file ${path}: it belongs to uid 12345, not to root or the daemon's uid ${process.getuid!()} (chown it)`);
    chownSync(path, process.getuid!(), 0);
    expect(() => store.load()).not.toThrow();
  });

  it('refuses a file in a directory other users can write: a swap or a deletion there keeps the policy in force (found by review)', () => {
    const { store, dir, path, logs } = setup(grant('encrypt'));
    store.load();
    chmodSync(dir, 0o777);
    // What another uid can do there: rename an older policy over it, or delete it.
    writeFileSync(`${path}.old`, grant('decrypt'));
    renameSync(`${path}.old`, path);
    const why = `the directory ${dir} on its path is writable by every user, who could replace or delete the file (chmod o-w ${dir})`;
    expect(store.reload('SIGHUP')).toBe(false);
    expect(logs.at(-1)).toEqual({ level: 'error', msg: `policy file ${path} is invalid; keeping the policy in force: ${why}` });
    rmSync(path);
    expect(store.reload('SIGHUP')).toBe(false);
    expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(true);
    expect(store.decide(app, 'decrypt', 'k-1').allowed).toBe(false);
    const fresh = new PolicyStore({ path, admins: new Set([0]), log: () => {}, accounts });
    expect(() => fresh.load()).toThrow(`policy file ${path}: ${why}`);
    chmodSync(dir, 0o1777);
    expect(() => fresh.load()).not.toThrow();
  });

  it('reload applies a valid file and keeps the old policy when the new one is invalid', () => {
    const { store, path, logs } = setup(grant('encrypt'));
    store.load();
    expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(true);
    writeFileSync(path, '{"rules": [ {');
    expect(store.reload('SIGHUP')).toBe(false);
    expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(true);
    expect(logs.at(-1)).toEqual({ level: 'error', msg: expect.stringMatching(/is invalid; keeping the policy in force: line 1, column \d+/) });
    writeFileSync(path, grant('decrypt'));
    expect(store.reload('SIGHUP')).toBe(true);
    expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(false);
    expect(store.decide(app, 'decrypt', 'k-1').allowed).toBe(true);
    rmSync(path);
    expect(store.reload('SIGHUP')).toBe(true);
    expect(store.decide(app, 'decrypt', 'k-1').allowed).toBe(false);
  });

  it('reloads when the file is replaced (rename into place, as editors do)', async () => {
    const { store, dir, path } = setup(grant('encrypt'));
    store.load();
    store.watch();
    try {
      const tmp = join(dir, '.policy.json.tmp');
      writeFileSync(tmp, grant('mac'));
      renameSync(tmp, path);
      await expect.poll(() => store.decide(app, 'mac', 'k-2').allowed, { timeout: 5000 }).toBe(true);
      expect(store.decide(app, 'encrypt', 'k-2').allowed).toBe(false);
      const before = store.generation;
      writeFileSync(path, 'not json');
      await expect.poll(() => store.generation, { timeout: 5000 }).toBeGreaterThan(before);
      expect(store.decide(app, 'mac', 'k-2').allowed).toBe(true);
    } finally {
      store.close();
    }
  });

  it('changes that never stop do not postpone the reload for ever (found by review)', async () => {
    const { path, logs } = setup(grant('encrypt'));
    const store = new PolicyStore({ path, admins: new Set([0, 999]), log: (level, msg) => logs.push({ level, msg }), accounts, debounceMs: 1000, maxDelayMs: 200 });
    store.load();
    store.watch();
    // A revocation, then the same text rewritten every 10 ms: change events keep coming, each
    // sooner than the 1 s quiet period.
    const revoked = JSON.stringify({ rules: [] });
    writeFileSync(path, revoked);
    const started = performance.now();
    let revokedAfter: number | undefined;
    try {
      while (performance.now() - started < 3000 && revokedAfter === undefined) {
        writeFileSync(path, revoked);
        await new Promise((r) => setTimeout(r, 10));
        if (!store.decide(app, 'encrypt', 'k-1').allowed) revokedAfter = performance.now() - started;
      }
    } finally {
      store.close();
    }
    // With the quiet period alone it never came while the writes went on (3 s here).
    expect(revokedAfter).toBeDefined();
    expect(logs.filter((l) => l.msg === 'policy loaded: 0 rules')).toHaveLength(1);
  });

  it('follows a symlinked file: a ConfigMap-style swap, a re-pointed link, an edited target, a swapped link on the way', async () => {
    // As Kubernetes mounts a ConfigMap: policy.json -> ..data/policy.json, ..data -> ..v1; an
    // update writes ..v2 and renames a new ..data link over the old one.
    const { dir, path, logs } = setup();
    const store = new PolicyStore({ path, admins: new Set([0, 999]), log: (level, msg) => logs.push({ level, msg }), accounts, debounceMs: 20, pollMs: 50 });
    const relink = (target: string, link: string) => {
      symlinkSync(target, `${link}.tmp`);
      renameSync(`${link}.tmp`, link); // ln -sfn, atomically
    };
    const version = (n: number, text: string) => {
      mkdirSync(join(dir, `..v${n}`));
      writeFileSync(join(dir, `..v${n}`, 'policy.json'), text);
      relink(`..v${n}`, join(dir, '..data'));
    };
    version(1, grant('encrypt'));
    symlinkSync('..data/policy.json', path);
    store.load();
    store.watch();
    try {
      expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(true);
      version(2, grant('mac'));
      await expect.poll(() => store.decide(app, 'mac', 'k-1').allowed, { timeout: 5000 }).toBe(true);
      expect(store.decide(app, 'encrypt', 'k-1').allowed).toBe(false);
      // The target edited in place.
      writeFileSync(join(dir, '..v2', 'policy.json'), JSON.stringify({ rules: [{ principals: ['user:app'], operations: ['hash'] }] }));
      await expect.poll(() => store.decide(app, 'hash').allowed, { timeout: 5000 }).toBe(true);
      // The link re-pointed to a file elsewhere, then that file edited (review: a stale target name).
      const srv = mkdtempSync(join(tmpdir(), 'rf-policy-srv-'));
      writeFileSync(join(srv, 'a.json'), grant('decrypt'));
      relink(join(srv, 'a.json'), path);
      await expect.poll(() => store.decide(app, 'decrypt', 'k-1').allowed, { timeout: 5000 }).toBe(true);
      writeFileSync(join(srv, 'a.json'), grant('verify'));
      await expect.poll(() => store.decide(app, 'verify', 'k-1').allowed, { timeout: 5000 }).toBe(true);
      // A symlink on the way swapped (a deploy's current -> v2), in a directory nobody watches.
      mkdirSync(join(srv, 'v1'));
      mkdirSync(join(srv, 'v2'));
      writeFileSync(join(srv, 'v1', 'policy.json'), grant('rotate'));
      writeFileSync(join(srv, 'v2', 'policy.json'), grant('update'));
      symlinkSync('v1', join(srv, 'current'));
      relink(join(srv, 'current', 'policy.json'), path);
      await expect.poll(() => store.decide(app, 'rotate', 'k-1').allowed, { timeout: 5000 }).toBe(true);
      relink('v2', join(srv, 'current'));
      await expect.poll(() => store.decide(app, 'update', 'k-1').allowed, { timeout: 5000 }).toBe(true);
      // Other files in the directories change nothing and log nothing, invalid policy or not.
      writeFileSync(join(srv, 'v2', 'policy.json'), '{ broken');
      await expect.poll(() => logs.filter((l) => l.level === 'error').length, { timeout: 5000 }).toBe(1);
      const logged = logs.length;
      for (let i = 0; i < 5; i++) writeFileSync(join(dir, `unrelated-${i}`), 'x');
      await new Promise((r) => setTimeout(r, 500));
      expect(logs.slice(logged)).toEqual([]);
      expect(store.decide(app, 'update', 'k-1').allowed).toBe(true); // the invalid file kept the policy
    } finally {
      store.close();
    }
  }, 30_000);
});

describe('Access', () => {
  it('denies with PERMISSION_DENIED naming the operation and key, never the rule', () => {
    const { store } = setup(grant('encrypt'));
    store.load();
    const access = new Access(store, (call) => (call.getPeer() === 'p1' ? app : undefined));
    const a = access.forCall({ getPeer: () => 'p1' });
    expect(() => a.authorize('encrypt', 'k-1')).not.toThrow();
    let err: unknown;
    try {
      a.authorize('decrypt', 'k-1');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: Status.PERMISSION_DENIED, reason: ErrorReason.PERMISSION_DENIED, message: 'the policy does not allow uid 1000 to decrypt with key "k-1"', metadata: { operation: 'decrypt', key_name: 'k-1', uid: '1000' } });
    expect(JSON.stringify(err)).not.toContain('"r"');
    expect(a.allows('encrypt', 'other')).toBe(false);
    expect(a.mayEverDo('encrypt')).toBe(true);
    expect(a.mayEverDo('read')).toBe(false);
  });

  it('an unidentified call may do nothing, not even what administrators may', () => {
    const { store } = setup();
    store.load();
    const a = new Access(store, () => undefined).forCall({ getPeer: () => 'x' });
    expect(() => a.authorize('hash')).toThrow('the policy does not allow an unidentified caller to use hash');
    expect(a.principal).toBeUndefined();
    expect(permissionDenied(undefined, 'random').metadata).toEqual({ operation: 'random' });
  });
});

describe('PolicyStore and a FIFO at the policy path (review by helper-132)', () => {
  it('refuses it at start at once instead of hanging the event loop', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-policy-fifo-'));
    try {
      const fifo = join(dir, 'policy.json');
      expect(spawnSync('mkfifo', ['-m', '0644', fifo]).status).toBe(0);
      // In a child: the old blocking open hung, and is failed here by the timeout.
      const r = runTs(`import { PolicyStore } from ${projectModule('src/daemon/policy/policy-store.ts')};
        try { new PolicyStore({ path: ${JSON.stringify(fifo)}, admins: new Set([0]), log: () => {} }).load(); console.log('loaded'); }
        catch (e) { console.log(e.message); }`, { timeoutMs: 20_000 });
      expect({ status: r.status, out: r.stdout.trim() }).toEqual({ status: 0, out: `policy file ${fifo}: it is not a regular file` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
