/**
 * The progress line and a terminal stdout (found by review). decrypt writes plaintext to a terminal (docs/cli.md);
 * when stderr is that same terminal, each redraw ("\r\x1b[K...") lands in the middle of the plaintext
 * on screen and the final clear erases the plaintext's last (unterminated) line.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { buildCli, runNode, type CliRunner } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;
beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  dir = mkdtempSync(join(tmpdir(), 'rf-progress-tty-'));
  daemon.keys.add('k', 1, { purpose: 1, suite: 1 });
});
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});
const tty = (streams: string[]) => ['--import', `data:text/javascript,${encodeURIComponent(streams.map((s) => `Object.defineProperty(process.${s}, 'isTTY', { value: true });`).join(''))}`];

test('no progress line while the output itself goes to the terminal; still one when it goes to a file', { timeout: 120_000 }, async () => {
  const text = Buffer.from(`${randomBytes(6 * 1024 * 1024).toString('base64')}\nTHE END`); // > 8 MiB, no final newline
  const pt = join(dir, 'pt.txt');
  writeFileSync(pt, text);
  const ct = join(dir, 'ct');
  expect((await runNode([cli.entry, '--socket', daemon.socketPath, 'encrypt', 'k', '-i', pt, '-o', ct])).code).toBe(0);
  // stdout and stderr both the terminal: plaintext to the screen, no bar drawn over it.
  const both = await runNode([...tty(['stdout', 'stderr']), cli.entry, '--socket', daemon.socketPath, 'decrypt', '-i', ct]);
  expect(both.code).toBe(0);
  expect(both.stdout.equals(text)).toBe(true);
  expect(both.stderr).toBe('');
  // Output to a file: the bar is still drawn on the terminal stderr.
  const toFile = await runNode([...tty(['stdout', 'stderr']), cli.entry, '--socket', daemon.socketPath, 'decrypt', '-i', ct, '-o', join(dir, 'out')]);
  expect(toFile.code).toBe(0);
  expect(toFile.stderr).toMatch(/^\r\x1b\[Kdecrypt \[/);
});
