/**
 * The host config's tally reporter, through vitest itself: child runs of this project's
 * vitest.config.ts on small fixture projects (--root), with and without filters.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VITEST_BIN = join(PROJECT_ROOT, 'node_modules/vitest/vitest.mjs');
const CONFIG = join(PROJECT_ROOT, 'vitest.config.ts');

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-tally-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fixture project whose src/*.test.ts the host config's include finds. Globals: no import of vitest from /tmp. */
function fixture(name: string, files: Record<string, string>): string {
  const root = join(tmp, name);
  mkdirSync(join(root, 'src'), { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(root, 'src', file), text);
  return root;
}

const skips = fixture('skips', {
  'a.test.ts': [
    "it('passes', () => {});",
    "it.skip('is skipped', () => {});",
    "it.todo('is todo');",
    "it('skips itself', (ctx) => ctx.skip('no fixture'));",
  ].join('\n'),
  'b.test.ts': "it('also passes', () => {});",
});
const clean = fixture('clean', { 'b.test.ts': "it('also passes', () => {});" });

/** vitest run as `npm run test:host` does, on `root`, plus `args`; its exit code and all its output. */
function vitestRun(root: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  // Not this run's own worker variables (VITEST_POOL_ID, ...): the child is a vitest of its own.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST')));
  const child = spawn(process.execPath, [VITEST_BIN, 'run', '--config', CONFIG, '--root', root, '--globals', ...args], { cwd: root, env: { ...env, NO_COLOR: '1' } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

type Run = Awaited<ReturnType<typeof vitestRun>>;
let full: Run, fullClean: Run, byName: Run, byFile: Run;
// Each child vitest takes seconds to start on a loaded host: all four run side by side, once.
beforeAll(async () => {
  [full, fullClean, byName, byFile] = await Promise.all([vitestRun(skips), vitestRun(clean), vitestRun(skips, '-t', 'passes'), vitestRun(skips, 'src/a.test.ts')]);
}, 120_000);

describe('the host tally reporter', () => {
  it('fails a full run with a skipped, a todo and a ctx.skip() test, naming each, and prints the tally', () => {
    expect(full.out).toContain('host: 2 passed, 0 failed, 3 skipped');
    expect(full.out).toContain('host: a full run must run every test; 3 ended skipped or todo (counted as failures):');
    expect(full.out).toContain('src/a.test.ts > is skipped (skipped)');
    expect(full.out).toContain('src/a.test.ts > is todo (todo)');
    expect(full.out).toContain('src/a.test.ts > skips itself (skipped: no fixture)');
    expect(full.code).toBe(1);
  });

  it('passes a full run where every test ran', () => {
    expect(fullClean.out).toContain('host: 1 passed, 0 failed, 0 skipped');
    expect(fullClean.code).toBe(0);
  });

  it('passes a run filtered by test name (-t marks the others skipped) or by file, printing the tally', () => {
    expect(byName.out).toContain('host: 2 passed, 0 failed, 3 skipped');
    expect(byName.out).not.toContain('a full run must run every test');
    expect(byName.code).toBe(0);
    expect(byFile.out).toContain('host: 1 passed, 0 failed, 3 skipped');
    expect(byFile.out).not.toContain('a full run must run every test');
    expect(byFile.code).toBe(0);
  });
});
