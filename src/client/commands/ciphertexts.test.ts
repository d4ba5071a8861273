/**
 * The CLI with ciphertexts that are not what they should be (tampered, truncated, not ours), and
 * reencrypt, datakey, and memory use on large streams. Real CLI, fake daemon.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ciphertextFromText, ciphertextToText } from '../sdk/index.js';
import { buildCli, runNode, type CliRunner, type RunOptions } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

const MiB = 1024 * 1024;
// Child processes on a loaded 2-core machine: seconds each, several at once.
const SLOW = { timeout: 120_000 };
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;
let streamCt: Buffer;
const streamPlain = randomBytes(3 * MiB + 17);

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  dir = mkdtempSync(join(tmpdir(), 'ringfence-ct-'));
  for (const k of ['k', 'other', 'rot']) daemon.keys.add(k, 1, { purpose: 1, suite: 1 });
  streamCt = (await rf(['encrypt', 'k'], { stdin: streamPlain })).stdout;
}, 60_000);
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

const rf = (args: string[], opts?: RunOptions) => cli.run(['--socket', daemon.socketPath, ...args], opts);
async function ok(args: string[], opts?: RunOptions): Promise<Buffer> {
  const r = await rf(args, opts);
  expect(r.stderr, args.join(' ')).toBe('');
  expect(r.code, args.join(' ')).toBe(0);
  return r.stdout;
}

/** Offsets of a stream ciphertext's chunks (40-byte header, then flags | len u32 | nonce | sealed). */
function chunks(ct: Buffer): { start: number; end: number }[] {
  const out = [];
  for (let at = 40; at < ct.length; at = out.at(-1)!.end) out.push({ start: at, end: at + 17 + ct.readUInt32BE(at + 1) });
  return out;
}

describe.concurrent('a stream that fails to decrypt leaves nothing that looks valid', SLOW, () => {
  const tampered = () => {
    const ct = Buffer.from(streamCt);
    const last = chunks(ct).at(-2)!; // a late chunk: earlier chunks' plaintext is already out
    ct[last.end - 5]! ^= 0x01;
    return ct;
  };
  const truncated = () => streamCt.subarray(0, chunks(streamCt).at(-1)!.start);

  test.each([
    ['tampered', tampered, /authentication failed/],
    ['truncated', truncated, /truncated stream ciphertext/],
    ['followed by extra bytes', () => Buffer.concat([streamCt, Buffer.from('more')]), /stream protocol violation/],
  ])('%s, -o FILE: exit 1, no FILE and no temporary file', async (_name, make, message) => {
    const sub = mkdtempSync(join(dir, 'fail-'));
    const out = join(sub, 'plain.bin');
    const r = await rf(['decrypt', '-o', out], { stdin: make() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^ringfence: decrypt: ${(message as RegExp).source}.*\\n$`));
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(sub)).toEqual([]);
  });

  test.each([
    ['tampered', tampered],
    ['truncated', truncated],
  ])('%s, to stdout: exit 1, the error, then a second line saying to discard the output', async (_name, make) => {
    const r = await rf(['decrypt'], { stdin: make() });
    expect(r.code).toBe(1);
    expect(r.stdout.length).toBeGreaterThan(0); // authenticated chunks were written before the failure
    expect(r.stdout.length).toBeLessThan(streamPlain.length);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^ringfence: decrypt: /);
    expect(lines[1]).toBe('ringfence: the plaintext already written to stdout is incomplete or not authentic: discard it');
  });

  test('-o FILE that existed is left as it was', async () => {
    const out = join(dir, 'existing.bin');
    writeFileSync(out, 'PREVIOUS');
    expect((await rf(['decrypt', '-o', out], { stdin: tampered() })).code).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe('PREVIOUS');
  });
});

describe.concurrent('input that is not a ciphertext: exit 1 with the reason, nothing on stdout', SLOW, () => {
  test.each([
    ['empty input', Buffer.alloc(0), 'ringfence: decrypt: stdin is empty, not a ciphertext'],
    ['text', Buffer.from('hello world'), 'ringfence: decrypt: stdin is not a ringfence ciphertext (neither the binary form, which starts with "RF", nor the text form "ringfence:v1:...")'],
    ['two bytes of magic', Buffer.from('RF'), 'ringfence: decrypt: stdin is not a ringfence ciphertext (neither the binary form, which starts with "RF", nor the text form "ringfence:v1:...")'],
    ['bad base64url', Buffer.from('ringfence:v1:abc+/=='), 'ringfence: decrypt: not a ringfence ciphertext: the text after the prefix is not base64url (A-Z a-z 0-9 - _, no padding)'],
    ['another text version', Buffer.from('ringfence:v2:AAAA'), 'ringfence: decrypt: not a ringfence ciphertext: text form must start with "ringfence:v1:" (got "ringfence:v2:...", a format version this one does not read)'],
    ['an unknown binary format', Buffer.concat([Buffer.from([0x52, 0x46, 9]), randomBytes(80)]), 'ringfence: decrypt: unsupported ciphertext format 9'],
    ['a unary header cut short', Buffer.from([0x52, 0x46, 1, 1, 2, 3]), 'ringfence: decrypt: malformed ciphertext: not a ringfence ciphertext'],
  ])('%s', async (_name, stdin, message) => {
    const r = await rf(['decrypt'], { stdin });
    expect([r.code, r.stdout.length, r.stderr]).toEqual([1, 0, `${message}\n`]);
  });

  test('a ciphertext of a deleted key', async () => {
    const ct = Buffer.from(await ok(['encrypt', 'k'], { stdin: 'x' }));
    ct.fill(0xab, 4, 20); // another key id
    const r = await rf(['decrypt'], { stdin: ct });
    expect([r.code, r.stderr]).toEqual([1, 'ringfence: decrypt: no key has id abababababababababababababababab\n']);
  });
});

describe.concurrent('reencrypt', SLOW, () => {
  test('after a rotation: binary in, binary out under the new version, same plaintext', async () => {
    const ct = await ok(['encrypt', 'rot', '--aad', 'ctx'], { stdin: 'rotate me' });
    await ok(['key', 'rotate', 'rot']);
    const again = await ok(['reencrypt', '--aad', 'ctx'], { stdin: ct });
    expect(again.subarray(0, 3)).toEqual(Buffer.from([0x52, 0x46, 1]));
    expect(again.readUInt32BE(20)).toBeGreaterThan(ct.readUInt32BE(20));
    expect((await ok(['decrypt', '--aad', 'ctx'], { stdin: again })).toString()).toBe('rotate me');
  });

  test('text in, text out (one line); --to moves it to another key; --json names both keys', async () => {
    const text = ciphertextToText(await ok(['encrypt', 'k'], { stdin: Buffer.from([0, 255]) }));
    const out = (await ok(['reencrypt', '--to', 'other'], { stdin: `${text}\n` })).toString();
    expect(out).toMatch(/^ringfence:v1:[A-Za-z0-9_-]+\n$/);
    expect(ciphertextFromText(out).subarray(4, 20).toString('hex')).toBe(daemon.keys.find('other').key.id);
    expect(await ok(['decrypt'], { stdin: out })).toEqual(Buffer.from([0, 255]));
    const doc = JSON.parse((await ok(['reencrypt', '--json', '-i', '-'], { stdin: out })).toString());
    expect(doc).toEqual({ ciphertext: expect.stringMatching(/^ringfence:v1:/), key: 'other', version: 1, sourceKey: 'other', sourceVersion: 1 });
  });

  test('a stream ciphertext is refused (exit 1)', async () => {
    const r = await rf(['reencrypt'], { stdin: streamCt });
    expect([r.code, r.stdout.length]).toEqual([1, 0]);
    expect(r.stderr).toMatch(/^ringfence: reencrypt: reencrypt takes a ciphertext from unary encryption/);
  });
});

// Not concurrent: a test reads the fake daemon's last GenerateDataKey request, which the other would overwrite.
describe('datakey', SLOW, () => {
  test('two lines: the ciphertext (text form) and the plaintext (base64), which decrypt agrees with', async () => {
    const out = (await ok(['datakey', 'k'])).toString();
    const m = /^ciphertext: (ringfence:v1:[A-Za-z0-9_-]+)\nplaintext: ([A-Za-z0-9+/=]+)\n$/.exec(out)!;
    expect(m).not.toBeNull();
    const key = Buffer.from(m[2]!, 'base64');
    expect(key.length).toBe(32);
    expect(await ok(['decrypt'], { stdin: m[1]! })).toEqual(key);
    // Whitespace around the text form, however much (review by helper-135: 60 newlines first made it "not a ciphertext").
    expect(await ok(['decrypt'], { stdin: `${'\n'.repeat(60)}  \t${m[1]!}\n\n` })).toEqual(key);
    expect(await ok(['decrypt'], { stdin: `${' '.repeat(100_000)}${m[1]!}` })).toEqual(key);
  });

  test('--no-plaintext: the ciphertext only; --json, --length and --aad', async () => {
    expect((await ok(['datakey', 'k', '--no-plaintext'])).toString()).toMatch(/^ciphertext: ringfence:v1:[A-Za-z0-9_-]+\n$/);
    expect(daemon.lastRequest.GenerateDataKey).toMatchObject({ omitPlaintext: true });
    const doc = JSON.parse((await ok(['--json', 'datakey', 'k', '--length', '16', '--aad', 'a'])).toString());
    expect(Object.keys(doc)).toEqual(['ciphertext', 'plaintext', 'key', 'version']);
    expect(Buffer.from(doc.plaintext, 'base64').length).toBe(16);
    expect(await ok(['decrypt', '--aad', 'a'], { stdin: doc.ciphertext })).toEqual(Buffer.from(doc.plaintext, 'base64'));
    expect(Object.keys(JSON.parse((await ok(['--json', 'datakey', 'k', '--no-plaintext'])).toString()))).toEqual(['ciphertext', 'key', 'version']);
  });
});

describe('large streams use bounded memory', SLOW, () => {
  test('encrypting and decrypting 256 MiB from stdin peaks far below its size', async () => {
    const file = join(dir, 'huge.bin');
    writeFileSync(file, Buffer.alloc(256 * MiB, 0x5a));
    const baseline = (await rf(['status'], { measureRss: true })).maxRss!;
    // The measurement does see a process that holds its input.
    const slurp = await runNode(['-e', 'const c = []; process.stdin.on("data", (d) => c.push(d)).on("end", () => Buffer.concat(c))'], { stdinFile: file, measureRss: true });
    expect(slurp.maxRss!).toBeGreaterThan(256 * MiB);
    const enc = await rf(['encrypt', 'k', '-o', join(dir, 'huge.ct')], { stdinFile: file, measureRss: true });
    expect([enc.code, enc.stderr]).toEqual([0, '']);
    const dec = await rf(['decrypt', '-i', join(dir, 'huge.ct'), '-o', join(dir, 'huge.out')], { measureRss: true });
    expect([dec.code, dec.stderr]).toEqual([0, '']);
    for (const r of [enc, dec]) expect(r.maxRss! - baseline).toBeLessThan(64 * MiB);
    expect(readFileSync(join(dir, 'huge.out')).equals(readFileSync(file))).toBe(true);
    for (const f of ['huge.bin', 'huge.ct', 'huge.out']) rmSync(join(dir, f));
  });
});
