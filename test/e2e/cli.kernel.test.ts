/**
 * The `ringfence` CLI (the compiled build, as a shell runs it) against a real ringfenced in the
 * kernel guest: every command, exit codes, binary round trips through stdin/stdout and files, and a
 * large file streamed with -i/-o. Independent truth: node:crypto for MACs and digests, the bytes put
 * in, and what the SDK reports about the daemon's keys.
 */
import { spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingfenceClient } from '../../src/client/sdk/index.js';
import { currentKernel, suiteExpectedAvailable } from '../support/kernel-matrix.js';
import { CLI_MAIN, TestDaemon } from '../support/daemon.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

let socket = '';

function rf(args: string[], input?: Buffer | string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, '--socket', socket, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on('error', () => {}); // a command that exits before reading everything
    child.stdin.end(input ?? '');
  });
}

async function ok(args: string[], input?: Buffer | string): Promise<Buffer> {
  const r = await rf(args, input);
  expect(r.code, `ringfence ${args.join(' ')}: ${r.stderr}`).toBe(0);
  expect(r.stderr).toBe('');
  return r.stdout;
}

async function json<T = Record<string, unknown>>(args: string[], input?: Buffer | string): Promise<T> {
  return JSON.parse((await ok(['--json', ...args], input)).toString()) as T;
}

describe('ringfence CLI end to end', () => {
  let daemon: TestDaemon;
  let client: RingfenceClient;
  const dir = mkdtempSync(join(tmpdir(), 'rf-cli-'));
  const hmacKey = randomBytes(32);
  const defaultAead = currentKernel() === 'lts' ? 'aes-256-gcm' : 'aes-256-ccm';

  beforeAll(async () => {
    daemon = await TestDaemon.start({ config: { limits: { minDeletionWaitingPeriod: '1m' } } });
    socket = daemon.socket;
    client = new RingfenceClient({ socketPath: daemon.socket });
    writeFileSync(join(dir, 'hmac.key'), hmacKey, { mode: 0o600 });
  });
  afterAll(async () => {
    await client?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it('status and doctor say what the kernel allows', async () => {
    const text = (await ok(['status'])).toString();
    expect(text).toMatch(currentKernel() === 'restricted' ? /\nkernel +\S+, AF_ALG restricted \(af_alg_restrict\)\n/ : /\nkernel +\S+, AF_ALG not restricted\n/);
    expect(text).toMatch(/1024 connections \(256 per caller\), 128 calls each, 1024 calls in all \(256 per caller\), 64 hash streams per caller, idle 5m/);
    expect(text).toMatch(/\n +1000 keys \(250 per caller\), 1000 versions per key, 8000 key versions in all \(2000 per caller\)\n/);
    const s = await json<{ afAlgRestricted: boolean; defaultAeadSuite: string; suites: { suite: string; availability: string }[]; limits: Record<string, unknown> }>(['status']);
    expect(s.limits).toMatchObject({ maxPayloadBytes: 1024 * 1024, encryptionsPerVersion: 2 ** 32, maxConnections: 1024, maxCalls: 1024, maxCallsPerCaller: 256, maxKeys: 1000, maxKeysPerCaller: 250, maxVersionsPerKey: 1000, maxKeyVersions: 8000, maxKeyVersionsPerCaller: 2000, connectionIdleTimeoutSeconds: 300, connectionMaxAgeSeconds: null });
    expect(s.afAlgRestricted).toBe(currentKernel() === 'restricted');
    expect(s.defaultAeadSuite).toBe(defaultAead);
    expect(s.suites.find((x) => x.suite === 'aes-256-gcm')!.availability).toBe(currentKernel() === 'lts' ? 'available' : 'restricted');
    const doctor = await rf(['doctor']);
    expect(doctor.code).toBe(0);
    expect(doctor.stdout.toString()).toMatch(/ringfence doctor — kernel /);
  });

  it('manages keys: create, import, list, show, rotate, disable, enable, delete, cancel-delete', async () => {
    expect((await ok(['key', 'create', 'app'])).toString()).toBe(`created key app: aead, ${defaultAead}, generated in the kernel, version 1\n`);
    const mac = await json<{ suite: string; origin: string; purpose: string }>(['key', 'import', 'signer', '--from', join(dir, 'hmac.key'), '--suite', 'hmac-sha256']);
    expect(mac).toMatchObject({ suite: 'hmac-sha256', origin: 'imported', purpose: 'mac' });
    const list = (await ok(['key', 'list'])).toString();
    expect(list).toMatch(/^NAME\s+PURPOSE\s+SUITE\s+STATE\s+PRIMARY\s+ORIGIN/);
    expect(list).toMatch(/\napp\s+aead/);
    expect(list).toMatch(/\nsigner\s+mac\s+hmac-sha256/);
    expect((await ok(['key', 'rotate', 'app'])).toString()).toBe('rotated key app: primary version 2\n');
    expect((await client.getKey('app')).primaryVersion).toBe(2);
    const shown = await json<{ versions: { version: number; encryptionCount: number }[] }>(['key', 'show', 'app']);
    expect(shown.versions.map((v) => v.version)).toEqual([1, 2]);

    expect((await ok(['key', 'disable', 'app'])).toString()).toBe('disabled key app\n');
    const refused = await rf(['encrypt', 'app'], 'x');
    expect(refused.code).toBe(1);
    expect(refused.stdout.length).toBe(0);
    expect(refused.stderr).toMatch(/^ringfence: encrypt with key app: .*disabled/);
    expect((await ok(['key', 'enable', 'app'])).toString()).toBe('enabled key app\n');

    await ok(['key', 'create', 'doomed']);
    // Long enough that the key is still there when the next (slow, under TCG) CLI process runs.
    expect((await ok(['key', 'delete', 'doomed', '--after', '1h'])).toString()).toMatch(/^key doomed will be deleted at \d{4}-\d\d-\d\dT.*cancel-delete doomed\)\n$/);
    expect((await ok(['key', 'cancel-delete', 'doomed'])).toString()).toMatch(/^cancelled the deletion of key doomed; it is disabled/);
    expect((await client.getKey('doomed')).deletionTime).toBeUndefined();

    const missing = await rf(['key', 'show', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ringfence: .*nope.*\n$/);
  });

  it('encrypts and decrypts bytes through stdin/stdout and files, with associated data', async () => {
    const data = Buffer.concat([Buffer.from([0, 255, 10, 13, 0]), randomBytes(4096)]);
    const ct = await ok(['encrypt', 'app', '--aad', 'order-42'], data);
    expect(ct.subarray(0, 3).equals(Buffer.from([0x52, 0x46, 1]))).toBe(true); // "RF", unary format 1
    expect((await ok(['decrypt', '--aad', 'order-42'], ct)).equals(data)).toBe(true);
    const wrongAad = await rf(['decrypt', '--aad', 'order-43'], ct);
    expect(wrongAad.code).toBe(1);
    expect(wrongAad.stdout.length).toBe(0);

    writeFileSync(join(dir, 'in.bin'), data);
    await ok(['encrypt', 'app', '-i', join(dir, 'in.bin'), '-o', join(dir, 'in.rf')]);
    await ok(['decrypt', '-i', join(dir, 'in.rf'), '-o', join(dir, 'out.bin')]);
    expect(readFileSync(join(dir, 'out.bin')).equals(data)).toBe(true);

    const j = await json<{ ciphertext: string; key: string; version: number }>(['encrypt', 'app'], 'hello');
    expect(j.ciphertext).toMatch(/^ringfence:v1:/);
    expect(j).toMatchObject({ key: 'app', version: 2 });
    expect((await ok(['decrypt'], `${j.ciphertext}\n`)).toString()).toBe('hello');

    // Re-encryption moves an old ciphertext to the newest version without returning plaintext.
    await ok(['key', 'rotate', 'app']);
    const re = await json<{ ciphertext: string; version: number; sourceVersion: number }>(['reencrypt', '--aad', 'order-42'], ct);
    expect(re).toMatchObject({ version: 3, sourceVersion: 2 });
    expect((await ok(['decrypt', '--aad', 'order-42'], re.ciphertext)).equals(data)).toBe(true);
  });

  it('streams a large file in constant memory and refuses a tampered stream without leaving output', async () => {
    // Past the 1 MiB unary limit, so it streams; constant memory at 256 MiB is checked on the host.
    const big = randomBytes(5 * 1024 * 1024 + 123);
    writeFileSync(join(dir, 'big.bin'), big);
    await ok(['encrypt', 'app', '-i', join(dir, 'big.bin'), '-o', join(dir, 'big.rf')]);
    const ct = readFileSync(join(dir, 'big.rf'));
    expect(ct[2]).toBe(2); // stream format
    await ok(['decrypt', '-i', join(dir, 'big.rf'), '-o', join(dir, 'big.out')]);
    expect(createHash('sha256').update(readFileSync(join(dir, 'big.out'))).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));

    const truncated = ct.subarray(0, ct.length - 1000);
    writeFileSync(join(dir, 'trunc.rf'), truncated);
    const r = await rf(['decrypt', '-i', join(dir, 'trunc.rf'), '-o', join(dir, 'trunc.out')]);
    expect(r.code).toBe(1);
    expect(existsSync(join(dir, 'trunc.out'))).toBe(false);
    const toStdout = await rf(['decrypt'], truncated);
    expect(toStdout.code).toBe(1);
    expect(toStdout.stderr).toMatch(/already written to stdout is incomplete or not authentic: discard it/);
  }, 300_000);

  it('data keys, MACs, hashes and random bytes match independent computations', async () => {
    const dk = (await ok(['datakey', 'app'])).toString();
    const [, ctText, pt] = /^ciphertext: (ringfence:v1:\S+)\nplaintext: (\S+)\n$/.exec(dk)!;
    expect(Buffer.from(pt!, 'base64')).toHaveLength(32);
    expect((await ok(['decrypt'], ctText)).equals(Buffer.from(pt!, 'base64'))).toBe(true);
    const sealedOnly = await json<Record<string, unknown>>(['datakey', 'app', '--no-plaintext']);
    expect(sealedOnly.plaintext).toBeUndefined();

    const msg = randomBytes(1000);
    const expected = createHmac('sha256', hmacKey).update(msg).digest('hex');
    expect((await ok(['mac', 'signer'], msg)).toString()).toBe(`${expected}\n`);
    expect((await ok(['verify', 'signer', '--mac', expected], msg)).toString()).toBe('valid\n');
    const bad = await rf(['verify', 'signer', '--mac', expected.replace(/^./, (c) => (c === '0' ? '1' : '0'))], msg);
    expect([bad.code, bad.stdout.toString(), bad.stderr]).toEqual([1, 'invalid\n', '']);

    const data = randomBytes(1024 * 1024 + 7);
    writeFileSync(join(dir, 'h.bin'), data);
    for (const [alg, node] of [['sha256', 'sha256'], ['sha384', 'sha384'], ['sha512', 'sha512'], ['sha3-256', 'sha3-256'], ['sha3-512', 'sha3-512'], ['blake2b-512', 'blake2b512']] as const) {
      if (!suiteExpectedAvailable(alg)) {
        // af_alg_restrict=1 leaves only SHA-2 to the daemon: exit 1 with the reason and what to use.
        const refused = await rf(['hash', '--alg', alg, join(dir, 'h.bin')]);
        expect([refused.code, refused.stdout.length], alg).toEqual([1, 0]);
        expect(refused.stderr).toMatch(new RegExp(`refuses ${alg} to the daemon \\(af_alg_restrict=1\\); use one it allows \\(sha256, sha384, sha512\\)\n$`));
        continue;
      }
      expect((await ok(['hash', '--alg', alg, join(dir, 'h.bin')])).toString(), alg).toBe(`${createHash(node).update(data).digest('hex')}\n`);
    }
    expect((await ok(['hash'], 'abc')).toString()).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n'); // FIPS 180-2 B.1

    const r1 = await ok(['random', '64']);
    const r2 = await ok(['random', '64']);
    expect(r1).toHaveLength(64);
    expect(r1.equals(r2)).toBe(false);
  });

  it('answers usage errors with exit 2 and an unreachable daemon with exit 1 and the socket', async () => {
    const usage = await rf(['random', '0']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^ringfence: /);
    expect((await rf(['encrypt'])).code).toBe(2);
    const saved = socket;
    socket = join(dir, 'no-daemon.sock');
    try {
      const down = await rf(['status']);
      expect(down.code).toBe(1);
      expect(down.stderr).toContain(`not running or not reachable at ${socket}`);
    } finally {
      socket = saved;
    }
  });
});
