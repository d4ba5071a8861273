import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { checkOutput } from './output-target.js';

// The commands' -o cases (sticky directories, no RPC before a refusal) are in output-safety.test.ts.
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ringfence-output-target-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('checkOutput', () => {
  test('refuses what openOutput would, without creating anything', () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'OLD');
    expect(() => checkOutput(join(dir, 'no', 'out'))).toThrow(`cannot write ${join(dir, 'no', 'out')}: directory ${join(dir, 'no')} does not exist`);
    expect(() => checkOutput(join(file, 'out'))).toThrow(`cannot write ${join(file, 'out')}: ${file} is not a directory`);
    expect(() => checkOutput(join(file, 'a', 'out'))).toThrow(`cannot write ${join(file, 'a', 'out')}: ${join(file, 'a')} is not a directory`);
    expect(() => checkOutput(dir)).toThrow(`cannot write ${dir}: it is a directory`);
    expect(() => checkOutput(`${join(dir, 'new')}/`)).toThrow('a path ending in / names a directory');
    expect(readdirSync(dir)).toEqual(['file']);
  });

  test('accepts stdout, a new file, an existing one, a device, and leaves them as they were', () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'OLD');
    for (const path of [undefined, '-', '/dev/stdout', join(dir, 'new'), file, '/dev/null']) expect(() => checkOutput(path)).not.toThrow();
    expect(readdirSync(dir)).toEqual(['file']);
    expect(readFileSync(file, 'utf8')).toBe('OLD');
  });
});
