/**
 * Where results go and what a failure says about them, through the real CLI and the fake daemon:
 * --json honours -o (a decrypted document never lands on stdout when a file was asked for), raw
 * binary is not written to a terminal, no progress line is drawn over plaintext on one, a streamed write error names the user's path, and the
 * "discard what stdout got" note appears only when stdout got something. Plus usage errors found
 * before any client exists.
 */
import { chmodSync, chownSync, closeSync, createReadStream, existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner, type RunOptions } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';
import { Context, type Stdio } from './command.js';
import { keyCommands } from './keys.js';
import { UsageError } from './args.js';
import { PassThrough } from 'node:stream';
import { ciphertextToText } from '../sdk/index.js';

const MiB = 1024 * 1024;
const SLOW = { timeout: 60_000 };
// The child's stdout (and stderr) are pipes; this makes them report themselves terminals, as a shell's would.
const asTty = (streams: string[]) => ['--import', `data:text/javascript,${encodeURIComponent(streams.map((s) => `Object.defineProperty(process.${s}, 'isTTY', { value: true });`).join(''))}`];
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  dir = mkdtempSync(join(tmpdir(), 'ringfence-out-'));
  daemon.keys.add('k', 1, { purpose: 1, suite: 1 });
});
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

const rf = (args: string[], opts?: RunOptions) => cli.run(['--socket', daemon.socketPath, ...args], opts);
const rfTty = async (args: string[], opts?: RunOptions, streams = ['stdout']) => {
  const { runNode } = await import('./cli-runner.test-support.js');
  return runNode([...asTty(streams), cli.entry, '--socket', daemon.socketPath, ...args], opts);
};

describe('--json with -o FILE', SLOW, () => {
  test('decrypt writes the document (with the plaintext) to FILE, nothing to stdout', async () => {
    const ct = (await rf(['encrypt', 'k'], { stdin: 'secret words' })).stdout;
    const out = join(dir, 'pt.json');
    const r = await rf(['--json', 'decrypt', '-o', out], { stdin: ct });
    expect([r.code, r.stderr, r.stdout.length]).toEqual([0, '', 0]);
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    expect(Buffer.from(doc.plaintext, 'base64').toString()).toBe('secret words');
    expect(doc.key).toBe('k');
  });

  test('encrypt and reencrypt write theirs to FILE too', async () => {
    const enc = join(dir, 'ct.json');
    const r = await rf(['--json', 'encrypt', 'k', '-o', enc], { stdin: 'abc' });
    expect([r.code, r.stderr, r.stdout.length]).toEqual([0, '', 0]);
    const text = JSON.parse(readFileSync(enc, 'utf8')).ciphertext as string;
    expect(text).toMatch(/^ringfence:v1:/);
    const re = join(dir, 're.json');
    const r2 = await rf(['--json', 'reencrypt', '-o', re], { stdin: text });
    expect([r2.code, r2.stderr, r2.stdout.length]).toEqual([0, '', 0]);
    expect(JSON.parse(readFileSync(re, 'utf8')).ciphertext).toMatch(/^ringfence:v1:/);
  });
});

describe('binary output and terminals', SLOW, () => {
  test('encrypt and random refuse a terminal stdout (exit 2) before calling the daemon', async () => {
    const before = { ...daemon.calls };
    const enc = await rfTty(['encrypt', 'k'], { stdin: 'abc' });
    expect(enc.code).toBe(2);
    expect(enc.stderr).toMatch(/^ringfence: refusing to write binary ciphertext to a terminal: use -o FILE, a pipe, or --json/);
    const rnd = await rfTty(['random', '16']);
    expect(rnd.code).toBe(2);
    expect(rnd.stderr).toMatch(/^ringfence: refusing to write raw random bytes to a terminal/);
    expect(enc.stdout.length + rnd.stdout.length).toBe(0);
    expect(daemon.calls).toEqual(before);
  });

  test('on a terminal, -o FILE and --json still work, and decrypt prints plaintext', async () => {
    const out = join(dir, 'tty.ct');
    expect((await rfTty(['encrypt', 'k', '-o', out], { stdin: 'hello' })).code).toBe(0);
    const json = await rfTty(['--json', 'random', '8']);
    expect(json.code).toBe(0);
    expect(Buffer.from(JSON.parse(json.stdout.toString()).data, 'base64')).toHaveLength(8);
    const pt = await rfTty(['decrypt', '-i', out]);
    expect([pt.code, pt.stdout.toString()]).toEqual([0, 'hello']);
  });

  // Found by review: each redraw landed in the plaintext on screen and the final clear erased its last line.
  test('no progress line while decrypt writes to the terminal; still one when it writes a file', async () => {
    const text = Buffer.from(`${randomBytes(6 * MiB).toString('base64')}\nTHE END`); // > 8 MiB, no final newline
    const pt = join(dir, 'progress.txt');
    writeFileSync(pt, text);
    const ct = join(dir, 'progress.ct');
    expect((await rf(['encrypt', 'k', '-i', pt, '-o', ct])).code).toBe(0);
    const both = await rfTty(['decrypt', '-i', ct], undefined, ['stdout', 'stderr']);
    expect(both.code).toBe(0);
    expect(both.stdout.equals(text)).toBe(true);
    expect(both.stderr.toString()).toBe('');
    const toFile = await rfTty(['decrypt', '-i', ct, '-o', join(dir, 'progress.out')], undefined, ['stdout', 'stderr']);
    expect(toFile.code).toBe(0);
    expect(toFile.stderr.toString()).toMatch(/^\r\x1b\[Kdecrypt \[/);
  });
});

describe('streamed failures', SLOW, () => {
  const big = () => {
    const p = join(dir, 'big.bin');
    if (!existsSync(p)) writeFileSync(p, randomBytes(MiB + 1000));
    return p;
  };

  test('a write error names the path asked for, not the temporary file', async () => {
    const r = await rf(['encrypt', 'k', '-i', big(), '-o', join(dir, 'missing-dir', 'f')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot write ${join(dir, 'missing-dir', 'f')}: directory ${join(dir, 'missing-dir')} does not exist`);
    expect(r.stderr).not.toContain('ringfence-tmp');
  });

  test('an output refused at once (a directory, a file as directory) is one line and exit 1, for streamed encrypt and decrypt (found by review: a crash trace)', async () => {
    const sct = join(dir, 'big.sct');
    if (!existsSync(sct)) expect((await rf(['encrypt', 'k', '-i', big(), '-o', sct])).code).toBe(0);
    for (const out of [dir, join(big(), 'x')]) {
      for (const args of [['encrypt', 'k', '-i', big()], ['decrypt', '-i', sct]]) {
        const r = await rf([...args, '-o', out]);
        // One line, no crash trace after it.
        expect([r.code, r.stderr.split('\n').length], args.join(' ')).toEqual([1, 2]);
        expect(r.stderr).toMatch(new RegExp(`^ringfence: .*cannot write ${out}: ${out === dir ? 'it is a directory' : `${big()} is not a directory`}\n$`));
      }
    }
  });

  test('no "discard" note when nothing reached stdout; the note when something did', async () => {
    const none = await rf(['encrypt', 'no-such-key', '-i', big()]);
    expect(none.code).toBe(1);
    expect(none.stdout.length).toBe(0);
    expect(none.stderr).not.toMatch(/discard/);
    // A stream ciphertext cut after its first chunk: the first chunk's plaintext reaches stdout.
    const ct = (await rf(['encrypt', 'k', '-i', big()])).stdout;
    const firstChunkEnd = 40 + 17 + ct.readUInt32BE(40 + 1);
    const cut = await rf(['decrypt'], { stdin: ct.subarray(0, firstChunkEnd) });
    expect(cut.code).toBe(1);
    expect(cut.stdout.length).toBeGreaterThan(0);
    expect(cut.stderr).toMatch(/the plaintext already written to stdout is incomplete or not authentic: discard it/);
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);
  });
});

describe('an output that cannot be made fails before any RPC', SLOW, () => {
  // Found by review: unary commands called the daemon first, so an encryption it counted was thrown
  // away; streamed ones asked GetStatus first, and a missing directory showed only as ENOENT.
  test('a missing directory, a file as directory, a directory as FILE: exit 1 naming the path, no call reached the daemon, nothing created', async () => {
    const small = (await rf(['encrypt', 'k'], { stdin: 'small' })).stdout;
    const bigIn = join(dir, 'early-big.bin');
    writeFileSync(bigIn, randomBytes(MiB + 1000));
    const bigCt = join(dir, 'early-big.sct');
    expect((await rf(['encrypt', 'k', '-i', bigIn, '-o', bigCt])).code).toBe(0);
    const text = ciphertextToText(small);
    const runs: [string, string[], RunOptions][] = [
      ['encrypt', ['encrypt', 'k'], { stdin: 'plain' }],
      ['encrypt --json', ['--json', 'encrypt', 'k'], { stdin: 'plain' }],
      ['decrypt', ['decrypt'], { stdin: small }],
      ['reencrypt', ['reencrypt'], { stdin: text }],
      ['streamed encrypt', ['encrypt', 'k', '-i', bigIn], {}],
      ['streamed decrypt', ['decrypt', '-i', bigCt], {}],
    ];
    const missing = join(dir, 'no-such-dir');
    const outs: [string, string][] = [
      [join(missing, 'f'), `directory ${missing} does not exist`],
      [join(bigIn, 'f'), `${bigIn} is not a directory`],
      [dir, 'it is a directory'],
      [`${join(dir, 'new-name')}/`, 'a path ending in / names a directory; -o needs a file name'],
    ];
    for (const [what, args, opts] of runs) {
      for (const [out, why] of outs) {
        const before = { ...daemon.calls };
        const r = await rf([...args, '-o', out], opts);
        expect([r.code, r.stdout.length], `${what} -o ${out}`).toEqual([1, 0]);
        expect(r.stderr, `${what} -o ${out}`).toMatch(new RegExp(`^ringfence: [^\n]*cannot write ${escape(out)}: ${escape(why)}\n$`));
        expect(daemon.calls, `${what} -o ${out}`).toEqual(before);
      }
    }
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(join(dir, 'new-name'))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);
  });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('-o FILE onto what is already there', SLOW, () => {
  test('a name too long for the temporary name as it was (240 bytes; `> NAME` takes it) is written (review by helper-130)', async () => {
    const out = join(dir, 'é'.repeat(120)); // two bytes each: the cut must fall between characters
    writeFileSync(out, 'old');
    const r = await rf(['encrypt', 'k', '-o', out], { stdin: 'secret' });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect((await rf(['decrypt', '-i', out])).stdout.toString()).toBe('secret');
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);
  });

  test('an existing file is replaced with its mode kept; a new file is 0600', async () => {
    const existing = join(dir, 'shared.txt');
    writeFileSync(existing, 'old contents');
    chmodSync(existing, 0o640);
    const r = await rf(['encrypt', 'k', '-o', existing], { stdin: 'new contents' });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(statSync(existing).mode & 0o7777).toBe(0o640);
    expect(readFileSync(existing).subarray(0, 2).toString()).toBe('RF');
    const fresh = join(dir, 'fresh.bin');
    expect((await rf(['encrypt', 'k', '-o', fresh], { stdin: 'x' })).code).toBe(0);
    expect(statSync(fresh).mode & 0o7777).toBe(0o600);
  });

  test('a symlink is followed: its target gets the output, the link stays a link', async () => {
    const target = join(dir, 'link-target.bin');
    writeFileSync(target, 'OLD');
    const link = join(dir, 'link.bin');
    symlinkSync('link-target.bin', link);
    const ct = (await rf(['encrypt', 'k'], { stdin: 'through the link' })).stdout;
    const r = await rf(['decrypt', '-o', link], { stdin: ct });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('through the link');
    // A dangling link names the file to create.
    const dangling = join(dir, 'dangling.bin');
    symlinkSync('made-through-link.bin', dangling);
    expect((await rf(['decrypt', '-o', dangling], { stdin: ct })).code).toBe(0);
    expect(readFileSync(join(dir, 'made-through-link.bin'), 'utf8')).toBe('through the link');
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
  });

  test('links are resolved as the kernel resolves them: `..` after a symlinked directory (found by review)', async () => {
    // d -> real/sub, and d/out -> ../target: open(2) reaches real/target, not <dir>/target.
    mkdirSync(join(dir, 'real', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'real', 'target'), 'OLD');
    symlinkSync(join(dir, 'real', 'sub'), join(dir, 'd'));
    symlinkSync('../target', join(dir, 'real', 'sub', 'out'));
    const ct = (await rf(['encrypt', 'k'], { stdin: 'via the real directory' })).stdout;
    expect((await rf(['decrypt', '-o', join(dir, 'd', 'out')], { stdin: ct })).code).toBe(0);
    expect(readFileSync(join(dir, 'real', 'target'), 'utf8')).toBe('via the real directory');
    expect(existsSync(join(dir, 'target'))).toBe(false);
    // A dangling link there names real/made, not <dir>/made.
    symlinkSync('../made', join(dir, 'real', 'sub', 'dangling'));
    expect((await rf(['decrypt', '-o', join(dir, 'd', 'dangling')], { stdin: ct })).code).toBe(0);
    expect(readFileSync(join(dir, 'real', 'made'), 'utf8')).toBe('via the real directory');
    expect(existsSync(join(dir, 'made'))).toBe(false);
  });

  test('-o /dev/stdout writes to the pipe that stdout is (a link to pipe:[N]: found by review)', async () => {
    const ctFile = join(dir, 'for-dev-stdout.bin');
    writeFileSync(ctFile, (await rf(['encrypt', 'k'], { stdin: 'to stdout by name' })).stdout);
    // A shell pipe: the test runner's own stdio is a socketpair, which /proc cannot reopen (ENXIO).
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    // Not spawnSync: the fake daemon answers from this process's event loop.
    const sh = spawn('bash', ['-c', `set -o pipefail; ${q(process.execPath)} ${q(cli.entry)} --socket ${q(daemon.socketPath)} decrypt -i ${q(ctFile)} -o /dev/stdout | cat`]);
    let out = '';
    let err = '';
    sh.stdout.on('data', (b: Buffer) => (out += b.toString()));
    sh.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const status = await new Promise<number | null>((resolve) => sh.on('close', (code) => resolve(code)));
    expect([status, err, out]).toEqual([0, '', 'to stdout by name']);
  });

  /** A new 0777 directory, and the test's own paths opened to uid 65534 (nobody): the bundled CLI, the fake daemon's socket. */
  function openToNobody(name: string): string {
    const open = join(dir, name);
    mkdirSync(open);
    for (const d of [dir, open, dirname(cli.entry), dirname(daemon.socketPath)]) chmodSync(d, 0o777);
    chmodSync(cli.entry, 0o644);
    chmodSync(daemon.socketPath, 0o666);
    return open;
  }
  const closeToNobody = () => {
    for (const d of [dir, dirname(cli.entry), dirname(daemon.socketPath)]) chmodSync(d, 0o700);
  };

  /** bash running `script` (with $RF the CLI command); spawned, as the fake daemon answers from this process. */
  async function shell(script: string, asNobody: boolean | string[] = false): Promise<{ status: number | null; err: string; out: string }> {
    const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const rfCommand = `${q(process.execPath)} ${q(cli.entry)} --socket ${q(daemon.socketPath)}`;
    const argv = ['bash', '-c', script.replaceAll('$RF', rfCommand)];
    const groups = Array.isArray(asNobody) ? asNobody : ['--clear-groups'];
    const sh = asNobody ? spawn('setpriv', ['--reuid=65534', '--regid=65534', ...groups, ...argv]) : spawn(argv[0]!, argv.slice(1));
    let out = '';
    let err = '';
    sh.stdout.on('data', (b: Buffer) => (out += b.toString()));
    sh.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const status = await new Promise<number | null>((resolve) => sh.on('close', (code) => resolve(code)));
    return { status, err, out };
  }

  test('-o /dev/stdout and /dev/fd/N onto a file write through the descriptor, keeping >> and what the shell wrote around it (review by helper-106)', async () => {
    const ctFile = join(dir, 'for-dev-fd.bin');
    writeFileSync(ctFile, (await rf(['encrypt', 'k'], { stdin: 'plaintext\n' })).stdout);
    const log = join(dir, 'append.log');
    writeFileSync(log, 'existing line\n');
    expect(await shell(`$RF decrypt -i '${ctFile}' -o /dev/stdout >> '${log}'`)).toEqual({ status: 0, err: '', out: '' });
    expect(readFileSync(log, 'utf8')).toBe('existing line\nplaintext\n');
    const grouped = join(dir, 'grouped.out');
    expect(await shell(`{ echo header; $RF decrypt -i '${ctFile}' -o /dev/stdout; echo footer; } > '${grouped}'`)).toEqual({ status: 0, err: '', out: '' });
    expect(readFileSync(grouped, 'utf8')).toBe('header\nplaintext\nfooter\n');
    expect(await shell(`$RF decrypt -i '${ctFile}' -o /dev/fd/3 3>> '${log}'`)).toEqual({ status: 0, err: '', out: '' });
    expect(readFileSync(log, 'utf8')).toBe('existing line\nplaintext\nplaintext\n');
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);
  });

  test('-o /dev/stderr and /dev/fd/N: a failure leaves the descriptor open, and a descriptor not passed in is a clean error (review by helper-108)', async () => {
    const sct = (await rf(['encrypt', 'k'], { stdin: Buffer.alloc(MiB + 1000, 1) })).stdout;
    const cut = join(dir, 'cut-for-fd.bin');
    writeFileSync(cut, sct.subarray(0, 40 + 17 + sct.readUInt32BE(40 + 1)));
    // `timeout`: a CLI that hangs (fd 2 closed under process.stderr) is killed, status 137.
    const failed = await shell(`timeout -s KILL 20 $RF decrypt -i '${cut}' -o /dev/stderr 2>/dev/null; echo "status $?"`);
    expect(failed.out).toBe('status 1\n');
    const errLog = join(dir, 'stderr.log');
    writeFileSync(errLog, 'before\n');
    const whole = join(dir, 'whole.bin');
    writeFileSync(whole, (await rf(['encrypt', 'k'], { stdin: 'to stderr\n' })).stdout);
    expect(await shell(`$RF decrypt -i '${whole}' -o /dev/stderr 2>> '${errLog}'`)).toEqual({ status: 0, err: '', out: '' });
    expect(readFileSync(errLog, 'utf8')).toBe('before\nto stderr\n');
    // fd 3 not passed by the shell: in the CLI it may be one of Node's own (its event loop's).
    const notPassed = await shell(`printf hi | timeout -s KILL 20 $RF encrypt k -o /dev/fd/3; echo "status $?"`);
    expect([notPassed.out, notPassed.err]).toEqual(['status 1\n', expect.stringMatching(/^ringfence: encrypt with key k: cannot write \/dev\/fd\/3: E[A-Z]+\n$/)]);
  });

  test('-o /dev/fd/3 that a parent passed as a socketpair (as Node and Python do) is written through the descriptor (review by helper-111)', async () => {
    const child = spawn(process.execPath, [cli.entry, '--socket', daemon.socketPath, 'encrypt', 'k', '-o', '/dev/fd/3'], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    const parts: Buffer[] = [];
    let err = '';
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => parts.push(b));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.stdin!.end('through a socketpair');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect([code, err]).toEqual([0, '']);
    expect((await rf(['decrypt'], { stdin: Buffer.concat(parts) })).stdout.toString()).toBe('through a socketpair');
  });

  test("another user's file the caller may write (group-writable) is refused, not taken over (review by helper-108)", async () => {
    const open = openToNobody('shared-dir');
    const shared = join(open, 'shared.txt');
    writeFileSync(shared, 'alice data\n');
    chownSync(shared, 1000, 1000);
    chmodSync(shared, 0o660);
    const r = await shell(`printf bob | $RF encrypt k -o '${shared}'`, ['--groups=1000']);
    expect([r.status, r.err]).toEqual([1, `ringfence: encrypt with key k: cannot write ${shared}: it belongs to uid 1000, and -o replaces FILE with a new file of yours; write elsewhere, or as its owner\n`]);
    expect([readFileSync(shared, 'utf8'), statSync(shared).uid, statSync(shared).gid]).toEqual(['alice data\n', 1000, 1000]);
    closeToNobody();
  });

  test('an existing file the caller may not write is refused, as `>` refuses it, even in a directory it may write (review by helper-106)', async () => {
    const open = openToNobody('world-writable');
    const readOnly = join(open, 'read-only.txt');
    writeFileSync(readOnly, 'keep me\n');
    chmodSync(readOnly, 0o444);
    const r = await shell(`printf secret | $RF encrypt k -o '${readOnly}'`, true);
    expect([r.status, r.err]).toEqual([1, `ringfence: encrypt with key k: cannot write ${readOnly}: EACCES\n`]);
    expect([readFileSync(readOnly, 'utf8'), statSync(readOnly).uid]).toEqual(['keep me\n', 0]);
    // One it may write is replaced as before.
    const own = join(open, 'own.bin');
    expect(await shell(`printf one | $RF encrypt k -o '${own}' && printf two | $RF encrypt k -o '${own}'`, true)).toMatchObject({ status: 0, err: '' });
    expect([(await rf(['decrypt', '-i', own])).stdout.toString(), statSync(own).uid]).toEqual(['two', 65534]);
    closeToNobody();
  });

  test('a directory the caller may not write is refused before any RPC, naming it (found by review: the encryption was thrown away)', async () => {
    const locked = openToNobody('locked');
    chmodSync(locked, 0o755);
    const before = { ...daemon.calls };
    const r = await shell(`printf secret | $RF encrypt k -o '${join(locked, 'f')}'`, true);
    expect([r.status, r.err]).toEqual([1, `ringfence: encrypt with key k: cannot write ${join(locked, 'f')}: directory ${locked} is not writable (EACCES)\n`]);
    expect(daemon.calls).toEqual(before);
    expect(readdirSync(locked)).toEqual([]);
    closeToNobody();
  });

  test('without /proc (a chroot), -o FILE is refused before any RPC, saying why; -o /dev/null and stdout still work', async () => {
    // -o FILE is written through /proc/self/fd, in the directory it checked (io.ts): a bare ENOENT
    // at the rename, after the encryption, otherwise.
    const noProc = (rf: string) => `unshare -m bash -c 'mount -t tmpfs none /proc && exec "$@"' - ${rf}`;
    const out = join(dir, 'no-proc.bin');
    const before = { ...daemon.calls };
    const r = await shell(`printf secret | ${noProc('$RF')} encrypt k -o '${out}'`);
    expect([r.status, r.err]).toEqual([1, `ringfence: encrypt with key k: cannot write ${out}: /proc is not mounted, and -o FILE writes through /proc/self/fd; mount /proc, or write to stdout\n`]);
    expect(daemon.calls).toEqual(before);
    expect(readdirSync(dir).filter((f) => f.includes('no-proc'))).toEqual([]);
    expect(await shell(`printf secret | ${noProc('$RF')} encrypt k -o /dev/null`)).toEqual({ status: 0, err: '', out: '' });
    const ct = await shell(`printf secret | ${noProc('$RF')} --json encrypt k`);
    expect([ct.status, ct.err, JSON.parse(ct.out).ciphertext]).toEqual([0, '', expect.stringMatching(/^ringfence:v1:/)]);
  });

  test("as root, another user's file in a sticky directory others may write is refused, as fs.protected_regular has `>` refuse it; elsewhere it keeps its owner", async () => {
    const ct = (await rf(['encrypt', 'k'], { stdin: 'root secret' })).stdout;
    // Made in advance by uid 12345 (0666) where the output was going to be written, to read it.
    const sticky = join(dir, 'sticky');
    mkdirSync(sticky);
    const planted = join(sticky, 'planted');
    writeFileSync(planted, '');
    chownSync(planted, 12345, 12345);
    chmodSync(planted, 0o666);
    const refused = `ringfence: decrypt: cannot write ${planted}: it belongs to uid 12345 and is in ${sticky}, a sticky directory others may write, so replacing it would leave the output in that user's file (as \`>\` would under fs.protected_regular); remove it first, or write elsewhere\n`;
    // World-writable (/tmp), and group-writable (as protected_regular=2 has it).
    for (const mode of [0o1777, 0o1770]) {
      chmodSync(sticky, mode);
      const before = { ...daemon.calls };
      const r = await rf(['decrypt', '-o', planted], { stdin: ct });
      expect([r.code, r.stderr], mode.toString(8)).toEqual([1, refused]);
      expect(daemon.calls).toEqual(before);
      expect([readFileSync(planted, 'utf8'), statSync(planted).uid, statSync(planted).mode & 0o7777]).toEqual(['', 12345, 0o666]);
    }
    // The directory's owner's file is theirs to read anyway: replaced, owner and mode kept.
    chmodSync(sticky, 0o1777);
    chownSync(sticky, 12345, 12345);
    expect(await rf(['decrypt', '-o', planted], { stdin: ct })).toMatchObject({ code: 0, stderr: '' });
    expect([readFileSync(planted, 'utf8'), statSync(planted).uid, statSync(planted).mode & 0o7777]).toEqual(['root secret', 12345, 0o666]);
    // Not sticky: replaced, owner and mode kept, as before.
    const plain = join(dir, 'not-sticky');
    mkdirSync(plain, { mode: 0o777 });
    const theirs = join(plain, 'theirs');
    writeFileSync(theirs, 'old');
    chownSync(theirs, 12345, 12345);
    chmodSync(theirs, 0o640);
    expect(await rf(['decrypt', '-o', theirs], { stdin: ct })).toMatchObject({ code: 0, stderr: '' });
    expect([readFileSync(theirs, 'utf8'), statSync(theirs).uid, statSync(theirs).mode & 0o7777]).toEqual(['root secret', 12345, 0o640]);
  });

  /** A fresh root-owned 01777 directory (as /tmp), with its real path for messages. */
  function stickyDir(name: string): string {
    const d = join(dir, name);
    mkdirSync(d);
    chmodSync(d, 0o1777);
    return realpathSync(d);
  }

  test("as root, another user's symlink in a sticky world-writable directory is not followed, as fs.protected_symlinks has the kernel refuse it (this system: 0); the caller's or the directory owner's is", async () => {
    const ct = (await rf(['encrypt', 'k'], { stdin: 'root secret' })).stdout;
    const sticky = stickyDir('sticky-links');
    // Root's file, and uid 12345's link to it where root was going to write.
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'root only\n');
    chmodSync(victim, 0o600);
    const link = join(sticky, 'out');
    symlinkSync(victim, link);
    lchownSync(link, 12345, 12345);
    const why = `of uid 12345 in ${sticky}, a sticky directory others may write, so that user chooses what it points at (as the kernel would under fs.protected_symlinks); name the real file instead, or write elsewhere`;
    // Directly, and through a link of root's elsewhere that leads to it (each trailing link is checked).
    const via = join(dir, 'via-foreign-link');
    symlinkSync(link, via);
    for (const [out, what] of [[link, 'it is a symlink'], [via, `it leads through ${link}, a symlink`]]) {
      const before = { ...daemon.calls };
      const r = await rf(['decrypt', '-o', out!], { stdin: ct });
      expect([r.code, r.stderr], out).toEqual([1, `ringfence: decrypt: cannot write ${out}: ${what} ${why}\n`]);
      expect(daemon.calls).toEqual(before);
      expect([readFileSync(victim, 'utf8'), statSync(victim).uid, statSync(victim).mode & 0o7777]).toEqual(['root only\n', 0, 0o600]);
    }
    // Dangling: nothing is created where it points.
    const wanted = join(dir, 'made-by-root');
    const dangling = join(sticky, 'dangling');
    symlinkSync(wanted, dangling);
    lchownSync(dangling, 12345, 12345);
    const before = { ...daemon.calls };
    const r = await rf(['decrypt', '-o', dangling], { stdin: ct });
    expect([r.code, r.stderr]).toEqual([1, `ringfence: decrypt: cannot write ${dangling}: it is a symlink ${why}\n`]);
    expect(daemon.calls).toEqual(before);
    expect(existsSync(wanted)).toBe(false);
    // The same through a chain: root's dangling-chain link to the foreign one.
    const chain = join(sticky, 'chain');
    symlinkSync(dangling, chain);
    const r2 = await rf(['decrypt', '-o', chain], { stdin: ct });
    expect([r2.code, r2.stderr]).toEqual([1, `ringfence: decrypt: cannot write ${chain}: it leads through ${dangling}, a symlink ${why}\n`]);
    expect(existsSync(wanted)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);

    // Still followed: a link of the caller's, or of the sticky directory's owner, or outside a sticky world-writable directory.
    const followed = (await rf(['encrypt', 'k'], { stdin: 'followed' })).stdout;
    const allowed = stickyDir('sticky-allowed');
    const target = join(dir, 'allowed-target');
    writeFileSync(target, 'old');
    // Root's own link there.
    const mine = join(allowed, 'mine');
    symlinkSync(target, mine);
    expect(await rf(['decrypt', '-o', mine], { stdin: followed })).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(target, 'utf8')).toBe('followed');
    // Root's dangling link there names the file to create.
    const mineDangling = join(allowed, 'mine-dangling');
    symlinkSync(join(dir, 'allowed-new'), mineDangling);
    expect(await rf(['decrypt', '-o', mineDangling], { stdin: followed })).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(join(dir, 'allowed-new'), 'utf8')).toBe('followed');
    // The directory owner's link (as the kernel allows).
    const owners = join(allowed, 'owners');
    symlinkSync(target, owners);
    lchownSync(owners, 12345, 12345);
    chownSync(allowed, 12345, 12345);
    writeFileSync(target, 'old');
    expect(await rf(['decrypt', '-o', owners], { stdin: followed })).toMatchObject({ code: 0, stderr: '' });
    expect(readFileSync(target, 'utf8')).toBe('followed');
    // Another user's link in a world-writable directory that is not sticky, or sticky but not world-writable.
    for (const mode of [0o777, 0o1770]) {
      const d = join(dir, `links-${mode.toString(8)}`);
      mkdirSync(d);
      chmodSync(d, mode);
      const theirs = join(d, 'theirs');
      symlinkSync(target, theirs);
      lchownSync(theirs, 12345, 12345);
      writeFileSync(target, 'old');
      expect(await rf(['decrypt', '-o', theirs], { stdin: followed }), mode.toString(8)).toMatchObject({ code: 0, stderr: '' });
      expect(readFileSync(target, 'utf8')).toBe('followed');
    }
  });

  test("as root, another user's FIFO in a sticky directory others may write is refused, as fs.protected_fifos=2 has `>` refuse it; the directory owner's is written", async () => {
    const ct = (await rf(['encrypt', 'k'], { stdin: 'into their pipe' })).stdout;
    const sticky = stickyDir('sticky-fifos');
    const fifo = join(sticky, 'planted');
    execFileSync('mkfifo', ['-m', '666', fifo]);
    chownSync(fifo, 12345, 12345);
    // Held open for reading and writing here, so the CLI's open never waits for a reader.
    const held = openSync(fifo, 'r+');
    try {
      // World-writable (/tmp), and group-writable (as protected_fifos=2 has it).
      for (const mode of [0o1777, 0o1770]) {
        chmodSync(sticky, mode);
        const before = { ...daemon.calls };
        const r = await rf(['decrypt', '-o', fifo], { stdin: ct });
        expect([r.code, r.stderr], mode.toString(8)).toEqual([
          1,
          `ringfence: decrypt: cannot write ${fifo}: it is a FIFO of uid 12345 in ${sticky}, a sticky directory others may write, so that user would read the output from it (as \`>\` would under fs.protected_fifos); remove it first, or write elsewhere\n`,
        ]);
        expect(daemon.calls).toEqual(before);
        expect(lstatSync(fifo).isFIFO()).toBe(true);
      }
      // The directory owner's: written in place.
      chmodSync(sticky, 0o1777);
      chownSync(sticky, 12345, 12345);
      expect(await rf(['decrypt', '-o', fifo], { stdin: ct })).toMatchObject({ code: 0, stderr: '' });
      const buf = Buffer.alloc(100);
      expect(buf.subarray(0, readSync(held, buf)).toString()).toBe('into their pipe');
    } finally {
      closeSync(held);
    }
    // /dev/null (a device, root's) still works.
    expect(await rf(['decrypt', '-o', '/dev/null'], { stdin: ct })).toMatchObject({ code: 0, stderr: '' });
  });

  test('a FIFO is written in place, not replaced by a file; a failed stream into it says to discard', async () => {
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const ct = (await rf(['encrypt', 'k'], { stdin: 'into the pipe' })).stdout;
    const read = readAllFrom(fifo);
    const r = await rf(['decrypt', '-o', fifo], { stdin: ct });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect((await read).toString()).toBe('into the pipe');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    // A stream ciphertext cut after its first chunk: that chunk's plaintext went into the pipe.
    const big = randomBytes(MiB + 1000);
    const sct = (await rf(['encrypt', 'k'], { stdin: big })).stdout;
    const cutRead = readAllFrom(fifo);
    const cut = await rf(['decrypt', '-o', fifo], { stdin: sct.subarray(0, 40 + 17 + sct.readUInt32BE(40 + 1)) });
    expect(cut.code).toBe(1);
    expect((await cutRead).length).toBeGreaterThan(0);
    expect(cut.stderr).toContain(`the plaintext already written to ${fifo} is incomplete or not authentic: discard it`);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('ringfence-tmp'))).toEqual([]);
  });

  test('a FIFO swapped for a file between its check and its open: that file is left as it was, exit 1, for unary encrypt and streamed decrypt', async () => {
    // Swaps at the CLI's fs.open of SWAP_PATH, just before it runs: after every check of the path.
    const swapAtOpen = `import fs from 'node:fs'; import { syncBuiltinESMExports } from 'node:module';
      const open = fs.open;
      fs.open = function (path, ...rest) {
        if (path === process.env.SWAP_PATH) { fs.open = open; syncBuiltinESMExports(); fs.renameSync(process.env.SWAP_FROM, path); }
        return open.call(this, path, ...rest);
      };
      syncBuiltinESMExports();`;
    const past = new Date('2020-01-02T03:04:05Z');
    const sct = (await rf(['encrypt', 'k'], { stdin: randomBytes(MiB + 1000) })).stdout;
    for (const [command, stdin, said] of [['encrypt', 'unary', 'encrypt with key k'], ['decrypt', sct, 'decrypt']] as const) {
      const fifo = join(dir, `swap-${command}`);
      const planted = join(dir, `planted-${command}`);
      execFileSync('mkfifo', [fifo]);
      writeFileSync(planted, 'OLD');
      utimesSync(planted, past, past);
      const { runNode } = await import('./cli-runner.test-support.js');
      const args = ['--import', `data:text/javascript,${encodeURIComponent(swapAtOpen)}`, cli.entry, '--socket', daemon.socketPath, command, ...(command === 'encrypt' ? ['k'] : []), '-o', fifo];
      const r = await runNode(args, { stdin, env: { SWAP_PATH: fifo, SWAP_FROM: planted } });
      expect(r.code, command).toBe(1);
      // First line: a stream's note on what reached the output depends on what the daemon sent by then.
      expect(r.stderr.split('\n')[0], command).toBe(`ringfence: ${said}: cannot write ${fifo}: it changed after it was checked (now a regular file); nothing was written`);
      expect([readFileSync(fifo, 'utf8'), statSync(fifo).mtime], command).toEqual(['OLD', past]);
    }
  });

  test('a directory on stdin is refused, as -i DIR is, not read as empty input (found by review)', async () => {
    for (const args of [['hash'], ['encrypt', 'k', '-o', join(dir, 'never')], ['mac', 'm']]) {
      const r = await rf(args, { stdinFile: dir });
      expect([r.code, r.stdout.length], args.join(' ')).toEqual([1, 0]);
      expect(r.stderr).toMatch(/^ringfence: .*cannot read stdin: it is a directory\n$/);
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  test('a directory is refused', async () => {
    const r = await rf(['encrypt', 'k', '-o', dir], { stdin: 'x' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot write ${dir}: it is a directory`);
  });
});

/** Everything written into a FIFO until its writer closes it (opened for reading at once, off the main thread). */
function readAllFrom(fifo: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    createReadStream(fifo)
      .on('data', (c: Buffer | string) => chunks.push(Buffer.from(c)))
      .on('end', () => resolve(Buffer.concat(chunks)))
      .on('error', reject);
  });
}

describe('usage errors before any client', () => {
  // A context whose client cannot be made (no socket path): usage errors must not need one.
  const io: Stdio = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() };
  const ctx = new (class extends Context {
    override client(): never {
      throw new Error('cannot choose a socket path');
    }
  })(false, undefined, io);
  const run = (name: string, args: string[], values: Record<string, string>) => keyCommands.find((c) => c.name === name)!.run(ctx, args, values);

  test.each([
    ['key create', ['bad name'], {}],
    ['key create', ['ok'], { suite: 'bogus' }],
    ['key create', ['ok'], { 'rotate-every': '0s' }],
    ['key show', ['bad name'], {}],
    ['key disable', ['bad name'], {}],
    ['key enable', ['bad name'], {}],
    ['key delete', ['bad name'], { after: '1d' }],
    ['key cancel-delete', ['bad name'], {}],
  ] as const)('%s %j %j is a UsageError', async (name, args, values) => {
    await expect(run(name, [...args], values)).rejects.toBeInstanceOf(UsageError);
  });
});
