/** mac / verify / hash / random through the real CLI and the fake daemon. */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner, type RunOptions } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

const MiB = 1024 * 1024;
// Child processes on a loaded 2-core machine: seconds each, several at once.
const SLOW = { timeout: 60_000 };
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;
const data = Buffer.concat([Buffer.from([0, 0xff, 0x0a, 0x0d]), randomBytes(5000)]);

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  dir = mkdtempSync(join(tmpdir(), 'ringfence-mac-'));
  daemon.keys.add('m', 1, { purpose: 2, suite: 7 }); // hmac-sha512
  daemon.keys.add('mrot', 1, { purpose: 2, suite: 5 });
  daemon.keys.add('aead', 1, { purpose: 1, suite: 1 });
});
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

const rf = (args: string[], opts?: RunOptions) => cli.run(['--socket', daemon.socketPath, ...args], opts);
async function ok(args: string[], opts?: RunOptions): Promise<string> {
  const r = await rf(args, opts);
  expect(r.stderr, args.join(' ')).toBe('');
  expect(r.code, args.join(' ')).toBe(0);
  return r.stdout.toString();
}
const hmac = (key: string, alg: string, bytes: Buffer, version = 1) => createHmac(alg, daemon.keys.find(key).material[version - 1]!).update(bytes).digest('hex');

describe.concurrent('mac and verify', SLOW, () => {
  test('mac prints the hex MAC of stdin or -i FILE; --json adds the key version', async () => {
    const expected = hmac('m', 'sha512', data);
    expect(await ok(['mac', 'm'], { stdin: data })).toBe(`${expected}\n`);
    const file = join(dir, 'data.bin');
    writeFileSync(file, data);
    expect(await ok(['mac', 'm', '-i', file])).toBe(`${expected}\n`);
    expect(JSON.parse(await ok(['--json', 'mac', 'm'], { stdin: data }))).toEqual({ mac: expected, key: 'm', version: 1 });
    expect(await ok(['mac', 'm'])).toBe(`${hmac('m', 'sha512', Buffer.alloc(0))}\n`);
  });

  test('verify: "valid" exit 0; "invalid" exit 1 with nothing on stderr; --json too', async () => {
    const mac = hmac('m', 'sha512', data);
    expect(await ok(['verify', 'm', '--mac', mac], { stdin: data })).toBe('valid\n');
    expect(await ok(['verify', 'm', '--mac', mac.toUpperCase()], { stdin: data })).toBe('valid\n');
    const wrong = `${mac.slice(0, -2)}${mac.endsWith('00') ? '01' : '00'}`;
    for (const [args, stdin] of [
      [['verify', 'm', '--mac', wrong], data],
      [['verify', 'm', '--mac', mac], Buffer.concat([data, Buffer.from([0])])],
      [['verify', 'm', '--mac', mac.slice(0, 64)], data],
    ] as const) {
      const r = await rf([...args], { stdin });
      expect([r.code, r.stdout.toString(), r.stderr]).toEqual([1, 'invalid\n', '']);
    }
    const json = await rf(['--json', 'verify', 'm', '--mac', wrong], { stdin: data });
    expect([json.code, JSON.parse(json.stdout.toString())]).toEqual([1, { valid: false, key: 'm', version: 1 }]);
    expect(JSON.parse(await ok(['verify', 'm', '--json', '--mac', mac], { stdin: data }))).toEqual({ valid: true, key: 'm', version: 1 });
  });

  test('--key-version verifies with an older version after a rotation', async () => {
    const old = hmac('mrot', 'sha256', data, 1);
    await ok(['key', 'rotate', 'mrot']);
    expect(JSON.parse(await ok(['--json', 'mac', 'mrot'], { stdin: data })).version).toBe(2);
    const primary = await rf(['verify', 'mrot', '--mac', old], { stdin: data });
    expect([primary.code, primary.stdout.toString()]).toEqual([1, 'invalid\n']);
    expect(await ok(['verify', 'mrot', '--mac', old, '--key-version', '1'], { stdin: data })).toBe('valid\n');
    const none = await rf(['verify', 'mrot', '--mac', old, '--key-version', '9'], { stdin: data });
    expect([none.code, none.stdout.length, none.stderr]).toEqual([1, 0, 'ringfence: verify a MAC with key mrot: key "mrot" has no version 9\n']);
  });

  test('failures: more than 1 MiB, an AEAD key, an unknown key', async () => {
    const big = await rf(['mac', 'm'], { stdin: Buffer.alloc(MiB + 1) });
    expect([big.code, big.stdout.length]).toEqual([1, 0]);
    expect(big.stderr).toMatch(/^ringfence: compute a MAC with key m: stdin is larger than 1 MiB, the most a MAC covers/);
    expect((await rf(['mac', 'm'], { stdin: Buffer.alloc(MiB) })).code).toBe(0);
    const aead = await rf(['mac', 'aead'], { stdin: 'x' });
    expect([aead.code, aead.stderr]).toEqual([1, 'ringfence: compute a MAC with key aead: key "aead" is not a MAC key\n']);
    const ghost = await rf(['verify', 'ghost', '--mac', '00'], { stdin: 'x' });
    expect([ghost.code, ghost.stdout.length, ghost.stderr]).toEqual([1, 0, 'ringfence: verify a MAC with key ghost: key "ghost" not found\n']);
  });
});

describe.concurrent('hash', SLOW, () => {
  test('sha256 by default, of stdin or FILE, through HashStream; --json gives algorithm and byte count', async () => {
    const sha = createHash('sha256').update(data).digest('hex');
    expect(await ok(['hash'], { stdin: data })).toBe(`${sha}\n`);
    const file = join(dir, 'hash.bin');
    writeFileSync(file, data);
    expect(await ok(['hash', file])).toBe(`${sha}\n`);
    expect(await ok(['hash', '-'], { stdin: data })).toBe(`${sha}\n`);
    expect(JSON.parse(await ok(['hash', '--json', file]))).toEqual({ digest: sha, algorithm: 'sha256', bytes: data.length });
    expect(await ok(['hash'])).toBe(`${createHash('sha256').digest('hex')}\n`);
    expect(daemon.calls.Hash).toBeUndefined();
  });

  test.each([
    ['sha384', 'sha384'],
    ['sha512', 'sha512'],
    ['sha3-256', 'sha3-256'],
    ['sha3-512', 'sha3-512'],
    ['blake2b-512', 'blake2b512'],
  ])('--alg %s', async (alg, nodeName) => {
    expect(await ok(['hash', '--alg', alg], { stdin: data })).toBe(`${createHash(nodeName).update(data).digest('hex')}\n`);
  });

  test('input of any size: 5 MiB', async () => {
    const big = randomBytes(5 * MiB);
    expect(await ok(['hash'], { stdin: big })).toBe(`${createHash('sha256').update(big).digest('hex')}\n`);
  });

  test('failures: an algorithm the kernel refuses, a missing file', async () => {
    const refused = await rf(['hash', '--alg', 'blake2b-256'], { stdin: 'x' });
    expect([refused.code, refused.stdout.length, refused.stderr]).toEqual([1, 0, 'ringfence: hash stdin: the kernel refuses blake2b-256 to the daemon under af_alg_restrict=1\n']);
    const missing = await rf(['hash', join(dir, 'nope')]);
    expect([missing.code, missing.stderr]).toEqual([1, `ringfence: hash ${join(dir, 'nope')}: cannot read ${join(dir, 'nope')}: ENOENT\n`]);
  });

  test('a FILE that exists but cannot be opened (EACCES, a socket: ENXIO) fails with its message, not a crash', async () => {
    // Its open fails while hash asks the daemon's limits (GetStatus), before anything reads: the
    // stream's error had no listener yet, and Node printed an "Unhandled 'error' event" trace.
    const r = await rf(['hash', daemon.socketPath]);
    expect([r.code, r.stdout.length, r.stderr]).toEqual([1, 0, `ringfence: hash ${daemon.socketPath}: cannot read ${daemon.socketPath}: ENXIO\n`]);
  });
});

describe.concurrent('random', SLOW, () => {
  test('N raw bytes on stdout, nothing else; different every time', async () => {
    const a = await rf(['random', '32']);
    const b = await rf(['random', '32']);
    expect([a.code, a.stdout.length, a.stderr]).toEqual([0, 32, '']);
    expect(a.stdout.equals(b.stdout)).toBe(false);
    expect((await rf(['random', '1'])).stdout.length).toBe(1);
    expect((await rf(['random', String(MiB)])).stdout.length).toBe(MiB);
  });

  test('--json: {"data": base64}', async () => {
    const doc = JSON.parse(await ok(['--json', 'random', '48']));
    expect(Object.keys(doc)).toEqual(['data']);
    expect(Buffer.from(doc.data, 'base64').length).toBe(48);
  });
});
