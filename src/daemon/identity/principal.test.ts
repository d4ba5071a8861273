/**
 * The executable path an audit line gives for a caller is bytes the caller chose (review by
 * helper-143): read as UTF-8, invalid bytes all became U+FFFD and control or bidi characters went
 * into the log as they were.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { readExe } from './principal.js';

const dir = mkdtempSync(join(tmpdir(), 'rf-exe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('gives bytes outside printable ASCII, and the backslash, as \\xHH', async () => {
  // 0xff is not UTF-8; U+202E (bidi override) is e2 80 ae; a literal backslash too.
  const name = Buffer.concat([Buffer.from('sleep-'), Buffer.from([0xff]), Buffer.from('\u202e\\x41')]);
  const path = Buffer.concat([Buffer.from(`${dir}/`), name]);
  copyFileSync('/bin/sleep', path);
  // Node takes no Buffer as a command: the shell finds the file by its prefix and execs it.
  const child = spawn('/bin/sh', ['-c', 'exec ./sleep-* 30'], { cwd: dir, stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    const want = `${dir}/sleep-\\xff\\xe2\\x80\\xae\\x5cx41`;
    await vi.waitFor(() => expect(readExe(child.pid!)).toBe(want)); // once the shell has exec'd
  } finally {
    child.kill();
  }
});

it('gives a plain path as it is, and nothing for a pid that is not there', () => {
  const node = realpathSync(process.execPath);
  expect(node).toMatch(/^[\x20-\x5b\x5d-\x7e]+$/);
  expect(readExe(process.pid)).toBe(node);
  expect(readExe(0)).toBeUndefined();
  expect(readExe(2 ** 22 + 1)).toBeUndefined(); // above pid_max's ceiling
});
