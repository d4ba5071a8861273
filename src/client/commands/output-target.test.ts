import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { checkOutput, failWriting, resolveOutput } from './output-target.js';

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

describe('resolveOutput', () => {
  // Paths built as text: join() would remove the `..` these tests are about.
  test('`..` after a symlinked directory is resolved by the kernel, as open(2) resolves it', () => {
    const real = realpathSync.native(dir);
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b', 'sub'), { recursive: true });
    symlinkSync('../b/sub', join(dir, 'a', 'l'));
    writeFileSync(join(dir, 'a', 'f'), 'A');
    writeFileSync(join(dir, 'b', 'f'), 'B');
    const at = (p: string) => resolveOutput(p, failWriting(p));
    // An existing file: b/f, not a/f (Node's JS realpath removed `..` as text first).
    expect(at(`${dir}/a/l/../f`)).toMatchObject({ kind: 'file', path: join(real, 'b', 'f') });
    // A new file: created (as its temporary file) and renamed in the directory the kernel names.
    expect(at(`${dir}/a/l/../new`)).toMatchObject({ kind: 'new', path: join(real, 'b', 'new') });
    // A dangling link whose target has `..` after a link: the kernel's reading too.
    symlinkSync('l/../g', join(dir, 'a', 'dangling'));
    expect(at(`${dir}/a/dangling`)).toMatchObject({ kind: 'new', path: join(real, 'b', 'g') });
    expect(readdirSync(join(dir, 'b')).sort()).toEqual(['f', 'sub']);
  });

  test('an empty name is refused before anything is called', () => {
    expect(() => checkOutput('')).toThrow("cannot write '': -o needs a file name");
  });
});
