import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from './config.js';
import { openFilesLimit, openFilesNeeded, openFilesWarning } from './open-files.js';

const ROOT = resolve(import.meta.dirname, '../..');
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

const LIMITS_TEXT = (soft: string, hard: string) =>
  `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             95304                95304                processes \nMax open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     \nMax locked memory         8388608              8388608              bytes     \n`;

describe('open files the limits may need', () => {
  it('counts a socket per transform and maxOpSockets more, the connections, and 256 others', () => {
    // docs/operations.md: 512 x (1 + 8) + 256 = 4864 for the crypto, plus maxConnections (1024).
    expect(openFilesNeeded(DEFAULT_LIMITS)).toBe(512 * 9 + 1024 + 256);
    expect(openFilesNeeded({ maxTransforms: 1, maxOpSockets: 1, maxConnections: 1 })).toBe(259);
  });

  it('reads the soft limit from /proc/self/limits', () => {
    expect(openFilesLimit(LIMITS_TEXT('1024', '524288'))).toBe(1024);
    expect(openFilesLimit(LIMITS_TEXT('unlimited', 'unlimited'))).toBe(Infinity);
    expect(openFilesLimit('nothing of the kind')).toBeUndefined();
    expect(openFilesLimit()).toBeGreaterThan(0); // this process's own
  });

  it('warns only below the need, naming the numbers and what to change', () => {
    expect(openFilesWarning(DEFAULT_LIMITS, 5888)).toBeUndefined();
    expect(openFilesWarning(DEFAULT_LIMITS, undefined)).toBeUndefined();
    const w = openFilesWarning(DEFAULT_LIMITS, 5887)!;
    expect(w.fields).toEqual({ openFilesLimit: 5887, openFilesNeeded: 5888, maxTransforms: 512, maxOpSockets: 8, maxConnections: 1024 });
    expect(w.message).toContain('up to 5888 files');
    expect(w.message).toContain('RLIMIT_NOFILE (5887)');
    expect(w.message).toContain('raise LimitNOFILE= in its systemd unit');
  });

  it('the daemon says so as it starts, under a hard limit below the defaults\' need', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-nofile-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // Node raises its soft limit to the hard one, so the hard limit (LimitNOFILE=) is set here.
    const child = spawn('bash', ['-c', 'ulimit -n 1500 && exec "$0" --import tsx src/daemon/main.ts --state-dir "$1/state" --socket "$1/s.sock" --policy "$1/policy.json"', process.execPath, dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    // This host has no AF_ALG: the daemon then exits 1; the warning comes before that, as in a guest.
    await new Promise((r) => child.once('exit', r));
    const line = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.openFilesNeeded !== undefined);
    expect(line, out).toMatchObject({ level: 40, openFilesLimit: 1500, openFilesNeeded: 5888 });
  }, 60_000);
});
