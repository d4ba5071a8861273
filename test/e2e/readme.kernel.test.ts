/**
 * The README's SDK example, run as written (only the package import is pointed at this checkout's
 * build) against a real daemon: the documentation cannot drift from the code.
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
});
