/**
 * Option values found wanting by review (helper-165): a duration longer than the daemon takes is a
 * usage error naming the option (exit 2, no daemon contacted), and the hint for an option value
 * starting with "-" works for short options too.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCli, type CliRunner } from './cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from './fake-daemon.test-support.js';

const SLOW = { timeout: 60_000 };
let cli: CliRunner;
let daemon: FakeDaemon;
let dir: string;

beforeAll(async () => {
  [cli, daemon] = await Promise.all([buildCli(), startFakeDaemon()]);
  daemon.keys.add('k', 1, { purpose: 1, suite: 1 });
  dir = mkdtempSync(join(tmpdir(), 'ringfence-optval-'));
});
afterAll(async () => {
  cli.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

const rf = (args: string[], cwd?: string) => cli.run(['--socket', daemon.socketPath, ...args], cwd ? { cwd } : {});

describe('durations beyond what the daemon takes are usage errors', SLOW, () => {
  test.each([
    [['key', 'create', 'k2', '--rotate-every', '999999999999d'], /^ringfence: --rotate-every: 999999999999d is longer than 100 years/],
    [['key', 'create', 'k2', '--rotate-every', '36526d'], /^ringfence: --rotate-every: 36526d is longer than 100 years/],
    [['key', 'delete', 'k', '--after', '366d'], /^ringfence: --after: 366d is longer than 365 days/],
    [['key', 'delete', 'k', '--after', '999999999999d'], /^ringfence: --after: 999999999999d is longer than 365 days/],
  ])('%j', async (args, message) => {
    const before = { ...daemon.calls };
    const r = await rf(args);
    expect([r.code, r.stdout.length]).toEqual([2, 0]);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/Ms must be/);
    expect(daemon.calls).toEqual(before);
  });

  test('the longest ones are still taken', async () => {
    expect((await rf(['key', 'create', 'k3', '--rotate-every', '36525d'])).code).toBe(0);
    expect((await rf(['key', 'delete', 'k3', '--after', '365d'])).code).toBe(0);
  });
});

describe('a value starting with "-"', SLOW, () => {
  test('the hint for -i names a form that reads that file', async () => {
    writeFileSync(join(dir, '-in'), 'dash');
    writeFileSync(join(dir, '=-in'), 'equals');
    const r = await rf(['encrypt', 'k', '-i', '-in'], dir);
    expect(r.code).toBe(2);
    const hint = /\(write (\S+) for one starting with "-"\)/.exec(r.stderr)?.[1];
    expect(hint).toBeDefined();
    // Follow the advice literally, VALUE being "-in".
    const followed = await rf(['encrypt', 'k', hint!.replace('VALUE', '-in')], dir);
    expect(followed.code).toBe(0);
    const pt = await cli.run(['--socket', daemon.socketPath, 'decrypt'], { stdin: followed.stdout });
    expect(pt.stdout.toString()).toBe('dash');
  });

  test('the hint for -o names a form that writes that file', async () => {
    writeFileSync(join(dir, 'p'), 'x');
    const r = await rf(['encrypt', 'k', '-i', 'p', '-o', '-out'], dir);
    expect(r.code).toBe(2);
    const hint = /\(write (\S+) for one starting with "-"\)/.exec(r.stderr)?.[1];
    const followed = await rf(['encrypt', 'k', '-i', 'p', hint!.replace('VALUE', '-out')], dir);
    expect(followed.code).toBe(0);
    expect([existsSync(join(dir, '-out')), existsSync(join(dir, '=-out'))]).toEqual([true, false]);
  });
});
