/**
 * The README's SDK example, run as written (only the package import is pointed at this checkout's
 * build) against a real daemon, and its try command: the documentation cannot drift from the code.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../support/run-ts.js';
import { TestDaemon } from '../support/daemon.js';

function readmeExample(): string {
  const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
  const m = /<!-- readme-sdk-example[^>]*-->\n```js\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error('README.md has no SDK example block after <!-- readme-sdk-example -->');
  return m[1]!;
}

describe('README', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
  });
  afterAll(async () => {
    expect(await daemon?.stop()).toBe(0);
  });

  it('the SDK example runs and prints what its comments say', () => {
    const sdk = pathToFileURL(join(PROJECT_ROOT, 'dist/src/client/sdk/index.js')).href;
    const code = readmeExample();
    expect(code).toContain("from 'ringfence/sdk'");
    const file = join(mkdtempSync(join(tmpdir(), 'rf-readme-')), 'example.mjs');
    writeFileSync(file, code.replace("'ringfence/sdk'", JSON.stringify(sdk)));
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGFENCE_SOCKET: daemon.socket } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const expected = [...code.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
    expect(expected.length).toBeGreaterThan(0);
    expect(r.stdout.trim().split('\n')).toEqual(expected);
  });

  it('scripts/try.sh, the README\'s try command: the demo runs, round-trips its message, and ends with an audit line', () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.RINGFENCE_SOCKET;
    const r = spawnSync('sh', [join(PROJECT_ROOT, 'scripts/try.sh')], { encoding: 'utf8', timeout: 300_000, env });
    expect(r.status, r.stderr).toBe(0);
    // Once decrypted, once more after the rotation and re-encryption.
    expect(r.stdout.match(/^hello, kernel-held key$/gm)).toHaveLength(2);
    const last = r.stdout.trim().split('\n').at(-1)!;
    expect(JSON.parse(last)).toMatchObject({ log: 'audit', outcome: 'OK' });
    expect(r.stderr).not.toMatch(/"level":/);
  });

  it('scripts/try.sh COMMAND: stdout is the command\'s alone, the daemon\'s log and audit lines go elsewhere', () => {
    // No policy file: the daemon warns, at the --log-level warn try.sh starts it with, and audits the call.
    const env: NodeJS.ProcessEnv = { ...process.env, RINGFENCE_POLICY: '/nonexistent/ringfence-policy.json' };
    delete env.RINGFENCE_SOCKET;
    const r = spawnSync('sh', [join(PROJECT_ROOT, 'scripts/try.sh'), 'status', '--json'], { encoding: 'utf8', timeout: 180_000, env });
    expect(r.status, r.stderr).toBe(0);
    // `scripts/try.sh status --json | jq` must work (review by helper-205: the log's lines came first).
    expect(JSON.parse(r.stdout)).toMatchObject({ daemonVersion: expect.any(String), keyCount: 0 });
    expect(r.stderr).not.toMatch(/"level":|no policy file/);
  });

  it('scripts/try.sh: a daemon that cannot start says why on stderr, and try.sh exits 1', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, RINGFENCE_CONFIG: '/nonexistent/ringfence-config.json' };
    delete env.RINGFENCE_SOCKET;
    const r = spawnSync('sh', [join(PROJECT_ROOT, 'scripts/try.sh'), 'status'], { encoding: 'utf8', timeout: 180_000, env });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('config file /nonexistent/ringfence-config.json (from RINGFENCE_CONFIG) cannot be read');
    expect(r.stderr).toContain('try.sh: ringfenced did not start');
  });
});
