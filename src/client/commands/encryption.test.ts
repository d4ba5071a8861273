/**
 * encrypt / decrypt / reencrypt / datakey through the real CLI and the fake daemon: binary round
 * trips through stdin/stdout and files, the unary/stream switch at 1 MiB, text forms, --json, and
 * what is left behind when a streamed decryption fails.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ciphertextToText } from '../sdk/index.js';
import { buildCli, type CliRunner, type RunOptions } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

const MiB = 1024 * 1024;
// Child processes on a loaded 2-core machine: seconds each, several at once.
const SLOW = { timeout: 60_000 };
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  dir = mkdtempSync(join(tmpdir(), 'ringfence-enc-'));
  for (const k of ['k', 'k2', 'rot', 'dk']) daemon.keys.add(k, 1, { purpose: 1, suite: 1 });
});
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
/** Bytes with every value, 0x00 and 0xff included, then random ones. */
const binary = (n: number) => Buffer.concat([Buffer.from(Array.from({ length: Math.min(n, 256) }, (_, i) => i)), randomBytes(Math.max(n - 256, 0))]);
const same = (a: Buffer, b: Buffer) => expect(a.length === b.length && a.equals(b), `${a.length} vs ${b.length} bytes`).toBe(true);

/** Offsets of a stream ciphertext's chunks (40-byte header, then flags | len u32 | nonce | sealed). */
function chunks(ct: Buffer): { start: number; end: number; final: boolean }[] {
  const out = [];
  for (let at = 40; at < ct.length; ) {
    const end = at + 17 + ct.readUInt32BE(at + 1);
    out.push({ start: at, end, final: ct[at] === 1 });
    at = end;
  }
  return out;
}

describe.concurrent('round trips through stdin and stdout', SLOW, () => {
  test.each([0, 1, 1000, MiB])('%d bytes: one Encrypt, a binary unary ciphertext, and back', async (n) => {
    const plaintext = binary(n);
    const ct = await ok(['encrypt', 'k'], { stdin: plaintext });
    expect(ct.subarray(0, 3)).toEqual(Buffer.from([0x52, 0x46, 1])); // "RF", format 1
    expect(ct.subarray(4, 20).toString('hex')).toBe(daemon.keys.find('k').key.id);
    expect(ct.length).toBe(n + 36 + 16);
    same(await ok(['decrypt'], { stdin: ct }), plaintext);
  });

  test.each([MiB + 1, 3 * MiB + 5])('%d bytes: streamed (format 2) and back', async (n) => {
    const plaintext = binary(n);
    const ct = await ok(['encrypt', 'k'], { stdin: plaintext });
    expect(ct.subarray(0, 3)).toEqual(Buffer.from([0x52, 0x46, 2]));
    expect(chunks(ct).at(-1)!.final).toBe(true);
    same(await ok(['decrypt'], { stdin: ct }), plaintext);
  });

  test('the 1 MiB switch: Encrypt for 1 MiB, EncryptStream for one byte more', async () => {
    const fresh = await startFakeDaemon();
    try {
      fresh.keys.add('k', 1, { purpose: 1, suite: 1 });
      const run = (n: number) => cli.run(['--socket', fresh.socketPath, 'encrypt', 'k'], { stdin: Buffer.alloc(n) });
      expect((await run(MiB)).code).toBe(0);
      expect(fresh.calls).toMatchObject({ Encrypt: 1 });
      expect((await run(MiB + 1)).code).toBe(0);
      expect(fresh.calls).toMatchObject({ Encrypt: 1, EncryptStream: 1 });
    } finally {
      await fresh.close();
    }
  });

  test('a daemon with a lower payload limit: encrypt falls back to streaming', async () => {
    const small = await startFakeDaemon({ maxPayloadBytes: 1000 });
    try {
      small.keys.add('k', 1, { purpose: 1, suite: 1 });
      const plaintext = binary(5000);
      const ct = (await cli.run(['--socket', small.socketPath, 'encrypt', 'k'], { stdin: plaintext })).stdout;
      expect(ct[2]).toBe(2);
      expect(small.calls).toMatchObject({ Encrypt: 1, EncryptStream: 1 });
      same((await cli.run(['--socket', small.socketPath, 'decrypt'], { stdin: ct })).stdout, plaintext);
      const json = await cli.run(['--socket', small.socketPath, '--json', 'encrypt', 'k'], { stdin: plaintext });
      expect([json.code, json.stdout.length]).toEqual([1, 0]);
      expect(json.stderr).toMatch(/^ringfence: encrypt with key k: plaintext of 5000 bytes exceeds the limit of 1000\n$/);
    } finally {
      await small.close();
    }
  });

  // The CLI sent 256 KiB chunks (and 1 MiB hash pieces) whatever the daemon allowed, so a daemon
  // configured with a lower max_stream_chunk_bytes refused every CLI stream with PAYLOAD_TOO_LARGE.
  test("a daemon with a lower max_stream_chunk_bytes: streams are cut to it (GetStatus tells), and round-trip", async () => {
    const small = await startFakeDaemon({ maxPayloadBytes: 1000, maxStreamChunkBytes: 64 * 1024 });
    try {
      small.keys.add('k', 1, { purpose: 1, suite: 1 });
      const plaintext = binary(300 * 1024);
      const run = (args: string[], stdin: Buffer) => cli.run(['--socket', small.socketPath, ...args], { stdin });
      const enc = await run(['encrypt', 'k'], plaintext);
      expect([enc.code, enc.stderr]).toEqual([0, '']);
      expect(chunks(enc.stdout).map((c) => c.end - c.start - 17 - 16)).toEqual([65536, 65536, 65536, 65536, 45056]);
      const dec = await run(['decrypt'], enc.stdout);
      expect([dec.code, dec.stderr]).toEqual([0, '']);
      same(dec.stdout, plaintext);
      const hash = await run(['hash'], plaintext);
      expect([hash.code, hash.stderr, hash.stdout.toString()]).toEqual([0, '', `${createHash('sha256').update(plaintext).digest('hex')}\n`]);
      expect(small.calls).toMatchObject({ EncryptStream: 1, DecryptStream: 1, HashStream: 1 });
    } finally {
      await small.close();
    }
  });

  test('--aad: needed to decrypt; a different or missing one fails authentication', async () => {
    for (const n of [100, 2 * MiB]) {
      const plaintext = binary(n);
      const ct = await ok(['encrypt', 'k', '--aad', 'user:42 ✓'], { stdin: plaintext });
      same(await ok(['decrypt', '--aad', 'user:42 ✓'], { stdin: ct }), plaintext);
      for (const args of [['decrypt', '--aad', 'user:43'], ['decrypt']]) {
        const wrong = await rf(args, { stdin: ct });
        expect(wrong.code).toBe(1);
        expect(wrong.stderr).toMatch(/^ringfence: decrypt: authentication failed/);
        expect(wrong.stdout.length).toBe(0); // a stream fails on its first chunk, before any output
      }
    }
  });

  test('a failed authentication says what to check about --aad, on its one line, quoting none of it', async () => {
    const GIVEN = 'check --aad: it must be the text given at encryption, and left out if none was given';
    const MISSING = 'no --aad was given: if it was encrypted with --aad, give the same text';
    for (const n of [100, 2 * MiB]) {
      const ct = await ok(['encrypt', 'k', '--aad', 'tenant-7f3e'], { stdin: binary(n) });
      const cases: [string[], string][] = [
        [['decrypt', '--aad', 'tenant-7f3f'], GIVEN],
        [['decrypt'], MISSING],
        ...(n === 100 ? ([[['reencrypt', '--aad', 'tenant-7f3f'], GIVEN], [['reencrypt'], MISSING]] as [string[], string][]) : []),
      ];
      for (const [args, hint] of cases) {
        const what = `${n} ${args.join(' ')}`;
        const wrong = await rf(args, { stdin: ct });
        expect(wrong.code, what).toBe(1);
        expect(wrong.stderr.startsWith(`ringfence: ${args[0]}: authentication failed`), `${what}: ${wrong.stderr}`).toBe(true);
        expect(wrong.stderr.endsWith(`; ${hint}\n`), `${what}: ${wrong.stderr}`).toBe(true);
        expect(wrong.stderr.split('\n'), what).toHaveLength(2); // one line
        expect(wrong.stderr).not.toMatch(/tenant/);
        expect(wrong.stdout.length).toBe(0);
      }
    }
    // Other failures get no such hint.
    const other = await rf(['decrypt', '--aad', 'x'], { stdin: Buffer.from('RF\x01\x01not a ciphertext') });
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/^ringfence: decrypt: [^\n]*\n$/);
    expect(other.stderr).not.toMatch(/authentication|--aad/);
  });

  test('--aad that is not UTF-8 is a usage error, not bound as U+FFFD (review by helper-106)', async () => {
    // Through bash, as a script passes bytes: Node would decode \\xff and \\xfe both to U+FFFD.
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const sh = spawn('bash', ['-c', `printf secret | ${q(process.execPath)} ${q(cli.entry)} --socket ${q(daemon.socketPath)} encrypt k --aad "$(printf 'id:\\xff')"`]);
    let err = '';
    sh.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const status = await new Promise<number | null>((resolve) => sh.on('close', resolve));
    expect([status, err.split('\n')[0]]).toEqual([2, 'ringfence: --aad must be UTF-8 text: it holds bytes that are not (or U+FFFD), which would not be passed on as given; for binary associated data use the SDK']);
    for (const command of [['encrypt', 'k'], ['decrypt'], ['reencrypt'], ['datakey', 'k']]) {
      const r = await rf([...command, '--aad', 'a\ufffdb'], { stdin: 'x' });
      expect([r.code, r.stdout.length, r.stderr.split('\n')[0]], command.join(' ')).toEqual([2, 0, expect.stringMatching(/^ringfence: --aad must be UTF-8 text/)]);
    }
  });

  test('a command that fails early exits while the writer of its stdin still holds the pipe open (review by helper-106)', async () => {
    const child = spawn(process.execPath, [cli.entry, '--socket', daemon.socketPath, 'decrypt'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.stdin.on('error', () => {});
    child.stdin.write(Buffer.alloc(100)); // not a ciphertext; stdin is never ended
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.stdin.destroy();
    expect([code, err]).toEqual([1, expect.stringMatching(/^ringfence: decrypt: /)]);
  });

  test('large input produces nothing on stderr when it is not a terminal', async () => {
    const r = await rf(['encrypt', 'k'], { stdin: Buffer.alloc(9 * MiB) });
    expect([r.code, r.stderr]).toEqual([0, '']);
  });
});

describe.concurrent('files: -i and -o', SLOW, () => {
  test('encrypt -i -o, decrypt -i -o: same bytes, outputs 0600, no temporary files left', async () => {
    for (const n of [10, 5 * MiB]) {
      const sub = mkdtempSync(join(dir, 'files-'));
      const plain = join(sub, 'plain.bin');
      writeFileSync(plain, binary(n));
      expect((await ok(['encrypt', 'k', '-i', plain, '-o', join(sub, 'ct.bin')])).length).toBe(0);
      expect((await ok(['decrypt', '--in', join(sub, 'ct.bin'), '--out', join(sub, 'back.bin')])).length).toBe(0);
      same(readFileSync(join(sub, 'back.bin')), readFileSync(plain));
      expect(statSync(join(sub, 'back.bin')).mode & 0o777).toBe(0o600);
      expect(readdirSync(sub).sort()).toEqual(['back.bin', 'ct.bin', 'plain.bin']);
    }
  });

  test('-o replaces an existing file; "-" means stdin and stdout', async () => {
    const out = join(dir, 'replace.bin');
    writeFileSync(out, 'OLD CONTENT');
    await ok(['encrypt', 'k', '-o', out], { stdin: 'new' });
    same(await ok(['decrypt', '-i', out, '-o', '-']), Buffer.from('new'));
    same(await ok(['decrypt', '-i', '-'], { stdin: readFileSync(out) }), Buffer.from('new'));
  });

  test('stdin redirected from a large file (< FILE) streams too', async () => {
    const file = join(dir, 'redirect.bin');
    writeFileSync(file, binary(2 * MiB));
    const ct = await ok(['encrypt', 'k'], { stdinFile: file });
    expect(ct[2]).toBe(2);
    same(await ok(['decrypt'], { stdin: ct }), readFileSync(file));
  });

  test('a missing input file: exit 1 naming it, and no output file', async () => {
    const r = await rf(['encrypt', 'k', '-i', join(dir, 'absent'), '-o', join(dir, 'never.bin')]);
    expect([r.code, r.stderr]).toEqual([1, `ringfence: encrypt with key k: cannot read ${join(dir, 'absent')}: ENOENT\n`]);
    expect(existsSync(join(dir, 'never.bin'))).toBe(false);
  });

  const untilTemporary = async (sub: string) => {
    const deadline = Date.now() + 30_000;
    while (readdirSync(sub).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(sub)[0]).toMatch(/^\.out1?\.bin\.[0-9a-f]{12}\.ringfence-tmp$/);
  };

  test('interrupted (SIGINT, SIGTERM) mid-stream: the temporary -o file is removed, then the CLI dies of the signal (the shell shows 130, 143)', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const sub = mkdtempSync(join(dir, 'sigint-'));
      const child = spawn(process.execPath, [cli.entry, '--socket', daemon.socketPath, 'encrypt', 'k', '-o', join(sub, 'out.bin')], { stdio: ['pipe', 'ignore', 'pipe'] });
      child.stdin.on('error', () => {}); // EPIPE once the child is gone
      child.stdin.write(Buffer.alloc(2 * MiB)); // more than 1 MiB: streaming starts, stdin stays open
      await untilTemporary(sub);
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (code, sig) => resolve([code, sig])));
      child.kill(signal);
      expect(await exited).toEqual([null, signal]);
      expect(readdirSync(sub)).toEqual([]);
    }
  });

  test('Ctrl-C stops a shell loop of encryptions (exit(130) after the cleanup let the loop go on to the next file)', async () => {
    const sub = mkdtempSync(join(dir, 'loop-'));
    const fifo = join(mkdtempSync(join(dir, 'fifo-')), 'in');
    execFileSync('mkfifo', [fifo]);
    const script = 'for n in 1 2; do "$0" "$1" --socket "$2" encrypt k -o "$3/out$n.bin" < "$4"; done; echo the loop went on';
    // Its own process group, which a terminal's Ctrl-C signals as a whole: the shell and the CLI.
    const shell = spawn('bash', ['-c', script, process.execPath, cli.entry, daemon.socketPath, sub, fifo], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    shell.stdout.on('data', (b: Buffer) => out.push(b));
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => shell.on('close', (code, sig) => resolve([code, sig])));
    const writer = createWriteStream(fifo); // opens once the first CLI opens it to read
    writer.on('error', () => {});
    writer.write(Buffer.alloc(2 * MiB)); // streaming starts; the FIFO stays open
    await untilTemporary(sub);
    process.kill(-shell.pid!, 'SIGINT');
    // A second run, if the loop went on, reads what is left: end of input.
    await new Promise((r) => setTimeout(r, 500));
    writer.end();
    expect(await exited).toEqual([null, 'SIGINT']);
    expect(Buffer.concat(out).toString()).toBe('');
    expect(readdirSync(sub)).toEqual([]);
  });

  test('a failed encrypt leaves no output file', async () => {
    const r = await rf(['encrypt', 'nokey', '-o', join(dir, 'nokey.bin')], { stdin: 'x' });
    expect([r.code, r.stderr]).toEqual([1, 'ringfence: encrypt with key nokey: key "nokey" not found\n']);
    expect(existsSync(join(dir, 'nokey.bin'))).toBe(false);
  });
});

describe.concurrent('--json', SLOW, () => {
  test('encrypt: {ciphertext (text form), key, version}; decrypt takes the text back, with or without a newline', async () => {
    const plaintext = binary(700);
    const doc = JSON.parse((await ok(['--json', 'encrypt', 'k'], { stdin: plaintext })).toString());
    expect(Object.keys(doc)).toEqual(['ciphertext', 'key', 'version']);
    expect(doc).toMatchObject({ key: 'k', version: 1, ciphertext: expect.stringMatching(/^ringfence:v1:[A-Za-z0-9_-]+$/) });
    same(await ok(['decrypt'], { stdin: doc.ciphertext }), plaintext);
    same(await ok(['decrypt'], { stdin: `  ${doc.ciphertext}\n` }), plaintext);
    const dec = JSON.parse((await ok(['decrypt', '--json'], { stdin: doc.ciphertext })).toString());
    expect(dec).toEqual({ plaintext: plaintext.toString('base64'), key: 'k', version: 1 });
  });

  test('encrypt --json of more than 1 MiB fails (exit 1, as an input mac refuses does), refused before reading a file', async () => {
    const file = join(dir, 'big-json.bin');
    writeFileSync(file, Buffer.alloc(MiB + 1));
    for (const opts of [{ stdin: Buffer.alloc(MiB + 1) }, { stdinFile: file }]) {
      const r = await rf(['encrypt', 'k', '--json'], opts);
      expect(r.code).toBe(1);
      expect(r.stdout.length).toBe(0);
      expect(r.stderr).toMatch(/^ringfence: encrypt with key k: --json needs input of at most 1 MiB[^\n]*\n$/);
    }
    const fileRun = await rf(['encrypt', 'k', '--json', '-i', file]);
    expect(fileRun.code).toBe(1);
  });

  test('decrypt --json of a stream ciphertext fails (exit 1)', async () => {
    const ct = await ok(['encrypt', 'k'], { stdin: Buffer.alloc(MiB + 1) });
    const r = await rf(['decrypt', '--json'], { stdin: ct });
    expect([r.code, r.stdout.length]).toEqual([1, 0]);
    expect(r.stderr).toMatch(/^ringfence: decrypt: --json needs a ciphertext from unary encryption[^\n]*\n$/);
  });

  test('the text form of a stream ciphertext decrypts too', async () => {
    const plaintext = binary(MiB + 100);
    const ct = await ok(['encrypt', 'k'], { stdin: plaintext });
    same(await ok(['decrypt'], { stdin: `${ciphertextToText(ct)}\n` }), plaintext);
  });
});
