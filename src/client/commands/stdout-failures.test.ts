/**
 * Output the CLI cannot deliver, and output to a terminal named by -o (found by review: helper-88).
 * Results printed as text or JSON went to stdout without waiting for the write: on a full disk or
 * with the reader gone, the error came after the exit code was set, so `ringfence --json encrypt k
 * > ct.json` on a full disk exited 0 with the only copy of the ciphertext lost. And `-o /dev/tty`
 * was not recognised as a terminal: the progress line was drawn into plaintext shown there, and
 * binary ciphertext written to it without the usual refusal.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';
import { PROGRESS_MIN_BYTES } from './progress.js';

const SLOW = { timeout: 120_000 };
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  daemon.keys.add('k', 1, { purpose: 1, suite: 1 });
  daemon.keys.add('m', 1, { purpose: 2, suite: 5 });
  dir = mkdtempSync(join(tmpdir(), 'ringfence-stdout-'));
});
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A shell command's stdout; async, as the fake daemon answers from this process's event loop. */
const sh = async (cmd: string) => (await promisify(execFile)('bash', ['-c', cmd], { encoding: 'latin1', maxBuffer: 64 << 20 })).stdout;
const rfCmd = (args: string) => `${process.execPath} ${cli.entry} --socket ${daemon.socketPath} ${args}`;

/** Runs the CLI with its stdout opened on `stdoutPath` (/dev/full: every write fails with ENOSPC). */
function runTo(stdoutPath: string, args: string[], stdin = ''): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const fd = openSync(stdoutPath, 'w');
    const child = spawn(process.execPath, [cli.entry, '--socket', daemon.socketPath, ...args], { stdio: ['pipe', fd, 'pipe'] });
    closeSync(fd);
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
    child.stdin!.on('error', () => {});
    child.stdin!.end(stdin);
  });
}

describe('stdout that cannot be written fails the command, with one line on stderr', SLOW, () => {
  test.each([
    [['random', '16'], '', 'random 16'], // the raw path, which always did
    [['--json', 'encrypt', 'k'], 'secret', 'encrypt with key k'],
    [['datakey', 'k'], '', 'generate a data key with key k'],
    [['--json', 'random', '16'], '', 'random 16'],
    [['hash'], 'abc', 'hash stdin'],
    [['mac', 'm'], 'abc', 'compute a MAC with key m'],
    [['status'], '', 'status'],
    [['--json', 'key', 'show', 'k'], '', 'show key k'],
    // Review by helper-92: these wrote around print(). doctor exits 1 on this machine anyway (no
    // AF_ALG), and says nothing on stderr when its report is written.
    [['doctor'], '', 'doctor'],
    [['--help'], '', 'help'],
  ])('ringfence %j > /dev/full', async (args, stdin, what) => {
    expect(await runTo('/dev/full', args as string[], stdin as string)).toEqual({ code: 1, stderr: `ringfence: ${what}: cannot write stdout: ENOSPC\n` });
  });

  test('a reader gone: --json random exits 1 as raw random does; a reader that stays gets exit 0', async () => {
    // The reader closes its input at once; node starts far later than that.
    const status = async (args: string) => (await sh(`${rfCmd(args)} 2>/dev/null | (exec 0<&-; sleep 0); echo \${PIPESTATUS[0]}`)).trim();
    expect([await status('random 16'), await status('--json random 16')]).toEqual(['1', '1']);
    expect((await sh(`${rfCmd('--json random 16')} | cat >/dev/null; echo \${PIPESTATUS[0]}`)).trim()).toBe('0');
  });
});

// script(1) (util-linux, in every Debian) gives the CLI a real terminal on stdin, stdout and stderr.
describe('-o naming the terminal is treated as stdout on a terminal', SLOW, () => {
  const onTerminal = (args: string) => sh(`script -qfec '${rfCmd(args)}; echo "exit $?"' /dev/null`);

  test('decrypt -o /dev/tty: the plaintext is shown with no progress line drawn into it', async () => {
    const pt = join(dir, 'pt.txt');
    writeFileSync(pt, randomBytes(Math.ceil((PROGRESS_MIN_BYTES * 3) / 4) + 65536).toString('base64'));
    const ct = join(dir, 'pt.ct');
    expect((await cli.run(['--socket', daemon.socketPath, 'encrypt', 'k', '-i', pt, '-o', ct])).code).toBe(0);
    const screen = await onTerminal(`decrypt -i ${ct} -o /dev/tty`);
    expect(screen.length).toBeGreaterThan(PROGRESS_MIN_BYTES);
    expect(screen).not.toContain('\x1b[K'); // the progress line's clear-to-end-of-line
    expect(screen.trimEnd().endsWith('exit 0')).toBe(true);
    // A control: to a file, from the same terminal, the progress line is drawn.
    expect(await onTerminal(`decrypt -i ${ct} -o ${join(dir, 'back.txt')}`)).toContain('\x1b[K');
  });

  test('encrypt -o /dev/tty refuses binary ciphertext, as to stdout on a terminal (exit 2)', async () => {
    const screen = await onTerminal(`encrypt k -i ${join(dir, 'pt.txt')} -o /dev/tty`);
    expect(screen).toMatch(/refusing to write binary ciphertext to a terminal/);
    expect(screen.trimEnd().endsWith('exit 2')).toBe(true);
  });
});

describe('stderr that cannot be written', SLOW, () => {
  test('a usage error still exits 2 when stderr is a pipe nobody reads (was 1: an uncaught EPIPE; review by helper-130)', async () => {
    // stderr is a pipe whose reader (`true`) has exited; the status goes to the outer stdout (fd 3).
    const script = `exec 3>&1; { sleep 0.3; ${process.execPath} ${cli.entry} frobnicate 2>&1 >/dev/null; echo "status $?" >&3; } | true`;
    expect(await sh(script)).toBe('status 2\n');
  });
});
