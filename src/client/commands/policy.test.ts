/** `ringfence policy check`: reads a policy file and explains the decision; no daemon involved. */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner } from './cli-runner.test-support.js';

const SLOW = { timeout: 60_000 };
const dir = mkdtempSync(join(tmpdir(), 'rf-policy-cli-'));
const policy = join(dir, 'policy.json');
writeFileSync(policy, JSON.stringify({ rules: [{ id: 'app', principals: ['uid:4321', 'gid:77'], operations: ['encrypt', 'decrypt'], keys: ['app-*'] }, { principals: ['*'], operations: ['hash'] }] }));
const invalid = join(dir, 'invalid.json');
writeFileSync(invalid, JSON.stringify({ rules: [{ principals: ['uid:1'], operations: ['encrpyt'], keys: ['k'] }] }));

let cli: CliRunner;
beforeAll(async () => {
  cli = await buildCli();
});
afterAll(() => cli.close());

describe.concurrent('policy check', SLOW, () => {
  test('allowed: names the rule and pattern, exit 0', async () => {
    const r = await cli.run(['policy', 'check', '--policy', policy, '--uid', '4321', '--gid', '4321', '--op', 'encrypt', '--key', 'app-orders']);
    expect([r.code, r.stderr, r.stdout.toString()]).toEqual([0, '', 'allowed: rule "app" grants encrypt on keys matching "app-*"\n']);
  });

  test('a name that does not resolve: a warning on stderr, and the rest of the file still decides', async () => {
    const ghost = join(dir, 'ghost.json');
    writeFileSync(ghost, JSON.stringify({ rules: [{ id: 'gone', principals: ['user:no-such-user-here', 'uid:4321'], operations: ['encrypt'], keys: ['app-*'] }] }));
    const r = await cli.run(['policy', 'check', '--policy', ghost, '--uid', '4321', '--gid', '4321', '--op', 'encrypt', '--key', 'app-orders']);
    expect([r.code, r.stdout.toString()]).toEqual([0, 'allowed: rule "gone" grants encrypt on keys matching "app-*"\n']);
    expect(r.stderr).toContain('warning: rules[0].principals[0]: no user named "no-such-user-here" in /etc/passwd; it matches nobody');
  });

  test('reencrypt allowed: a note says the daemon also checks the other key and decrypt on the source (review by helper-142)', async () => {
    const mover = join(dir, 'mover.json');
    writeFileSync(mover, JSON.stringify({ rules: [{ id: 'mover', principals: ['uid:4242'], operations: ['reencrypt'], keys: ['*'] }] }));
    const r = await cli.run(['policy', 'check', '--policy', mover, '--uid', '4242', '--gid', '4242', '--op', 'reencrypt', '--key', 'k2']);
    expect([r.code, r.stdout.toString()]).toEqual([0, 'allowed: rule "mover" grants reencrypt on keys matching "*"\n']);
    expect(r.stderr).toBe('ringfence: note: a ReEncrypt needs reencrypt on its source and destination keys, and, when they differ, decrypt on the source: check each\n');
  });

  test('allowed by group, keyless operation by "*"', async () => {
    expect((await cli.run(['policy', 'check', '--policy', policy, '--uid', '9999', '--gid', '77', '--op', 'decrypt', '--key', 'app-1'])).code).toBe(0);
    const r = await cli.run(['policy', 'check', '--policy', policy, '--uid', '9999', '--gid', '9999', '--op', 'hash']);
    expect(r.stdout.toString()).toBe('allowed: rule "rules[1]" grants hash\n');
  });

  test('denied: says no rule did, exit 1; --json', async () => {
    const r = await cli.run(['policy', 'check', '--policy', policy, '--uid', '4321', '--gid', '4321', '--op', 'mac', '--key', 'app-orders']);
    expect([r.code, r.stdout.toString()]).toEqual([1, 'denied: no rule grants uid 4321 (groups 4321) mac on key "app-orders"\n']);
    const j = await cli.run(['policy', 'check', '--policy', policy, '--uid', '4321', '--gid', '1', '--op', 'encrypt', '--key', 'other', '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout.toString())).toMatchObject({ allowed: false, rule: null, uid: 4321, gid: 1, operation: 'encrypt', key: 'other', policy, policyFound: true });
  });

  test('root administers; no policy file means administrators only', async () => {
    expect((await cli.run(['policy', 'check', '--policy', policy, '--uid', '0', '--gid', '0', '--op', 'delete', '--key', 'x'])).code).toBe(0);
    const r = await cli.run(['policy', 'check', '--policy', join(dir, 'missing.json'), '--uid', '4321', '--gid', '1', '--op', 'hash']);
    // The decision alone on stdout; the note on stderr (review by helper-117: it came first on stdout).
    expect([r.code, r.stdout.toString(), r.stderr.toString()]).toEqual([1, 'denied: no policy is loaded, so only administrators may act; uid 4321 may not hash\n', `ringfence: no policy file at ${join(dir, 'missing.json')}: only root and the daemon's uid may act (--daemon-uid names it)\n`]);
    expect((await cli.run(['policy', 'check', '--policy', join(dir, 'missing.json'), '--uid', '4321', '--gid', '1', '--op', 'hash', '--daemon-uid', '4321'])).code).toBe(0);
  });

  test('refuses a file the daemon would refuse: group- or world-writable, or owned by another user', async () => {
    const rule = JSON.stringify({ rules: [{ principals: ['*'], operations: ['hash'] }] });
    const writable = join(dir, 'writable.json');
    writeFileSync(writable, rule);
    chmodSync(writable, 0o664);
    const r = await cli.run(['policy', 'check', '--policy', writable, '--uid', '1', '--gid', '1', '--op', 'hash']);
    expect([r.code, r.stderr]).toEqual([1, `ringfence: policy check: the daemon would refuse the policy file ${writable}: it is writable by its group (chmod g-w it)\n`]);
    chmodSync(writable, 0o646);
    expect((await cli.run(['policy', 'check', '--policy', writable, '--uid', '1', '--gid', '1', '--op', 'hash'])).stderr).toMatch(/writable by every user \(chmod o-w it\)/);

    // Owned by uid 4321 (the CLI tests run as root, like the daemon's tests).
    const owned = join(dir, 'owned.json');
    writeFileSync(owned, rule);
    chownSync(owned, 4321, 4321);
    const other = await cli.run(['policy', 'check', '--policy', owned, '--uid', '1', '--gid', '1', '--op', 'hash', '--daemon-uid', '999']);
    expect([other.code, other.stderr]).toEqual([1, `ringfence: policy check: the daemon would refuse the policy file ${owned}: it belongs to uid 4321, not to root or the daemon's uid 999 (chown it)\n`]);
    const same = await cli.run(['policy', 'check', '--policy', owned, '--uid', '1', '--gid', '1', '--op', 'hash', '--daemon-uid', '4321']);
    expect([same.code, same.stderr]).toEqual([0, '']);
    const unknown = await cli.run(['policy', 'check', '--policy', owned, '--uid', '1', '--gid', '1', '--op', 'hash']);
    expect([unknown.code, unknown.stderr]).toEqual([0, `ringfence: note: ${owned} belongs to uid 4321: the daemon accepts it only if it runs as uid 4321\n`]);
  });

  test('refuses a file in a directory the daemon would refuse: writable by other users (found by review)', async () => {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const file = join(open, 'policy.json');
    writeFileSync(file, JSON.stringify({ rules: [{ principals: ['*'], operations: ['hash'] }] }));
    const r = await cli.run(['policy', 'check', '--policy', file, '--uid', '1', '--gid', '1', '--op', 'hash']);
    expect([r.code, r.stderr]).toEqual([1, `ringfence: policy check: the daemon would refuse the policy file ${file}: the directory ${open} on its path is writable by every user, who could replace or delete the file (chmod o-w ${open})\n`]);
  });

  test('an invalid policy file fails with the field; usage errors exit 2', async () => {
    const r = await cli.run(['policy', 'check', '--policy', invalid, '--uid', '1', '--gid', '1', '--op', 'hash']);
    expect([r.code, r.stderr]).toEqual([1, `ringfence: policy check: policy file ${invalid} is invalid: rules[0].operations[0]: "encrpyt" is not an operation (encrypt, decrypt, reencrypt, datakey, mac, verify, hash, random, create, import, read, rotate, update, disable, enable, delete, or *, use, admin)\n`]);
    for (const args of [['--op', 'hash'], ['--uid', '1', '--gid', '1'], ['--uid', '1', '--gid', '1', '--op', 'nope'], ['--uid', '1', '--gid', '1', '--op', 'encrypt'], ['--uid', 'no-such-user-x', '--op', 'hash']]) {
      const u = await cli.run(['policy', 'check', '--policy', policy, ...args]);
      expect([args, u.code]).toEqual([args, 2]);
    }
  });
});
