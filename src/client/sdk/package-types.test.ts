/**
 * The SDK is documented as typed: a TypeScript program importing `ringfence/sdk` the way the README
 * does must compile against what the package ships. Builds the declarations with the real
 * tsconfig.build.json into a copy of the package (its real package.json and exports), then
 * type-checks the README's example, and a misuse that the types must reject, as a consumer would.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const TSC = join(REPO, 'node_modules/.bin/tsc');
let dir: string;

function readmeExample(): string {
  const m = /<!-- readme-sdk-example[^>]*-->\n```js\n([\s\S]*?)```/.exec(readFileSync(join(REPO, 'README.md'), 'utf8'));
  if (!m) throw new Error('README.md has no SDK example block');
  return m[1]!;
}

function typecheck(file: string) {
  const consumer = join(dir, 'consumer');
  return spawnSync(TSC, ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', file], { cwd: consumer, encoding: 'utf8' });
}

describe('the SDK package for TypeScript consumers', { timeout: 120_000 }, () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rf-sdk-types-'));
    const pkg = join(dir, 'pkg');
    mkdirSync(pkg);
    copyFileSync(join(REPO, 'package.json'), join(pkg, 'package.json'));
    symlinkSync(join(REPO, 'node_modules'), join(pkg, 'node_modules'));
    const built = spawnSync(TSC, ['-p', join(REPO, 'tsconfig.build.json'), '--emitDeclarationOnly', '--outDir', join(pkg, 'dist')], { cwd: REPO, encoding: 'utf8' });
    expect(built.stdout + built.stderr).toBe('');
    const consumer = join(dir, 'consumer');
    mkdirSync(join(consumer, 'node_modules'), { recursive: true });
    writeFileSync(join(consumer, 'package.json'), '{ "type": "module" }');
    symlinkSync(pkg, join(consumer, 'node_modules/ringfence'));
    symlinkSync(join(REPO, 'node_modules/@types'), join(consumer, 'node_modules/@types'));
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the README's example compiles as TypeScript against ringfence/sdk", () => {
    writeFileSync(join(dir, 'consumer/example.ts'), readmeExample());
    const r = typecheck('example.ts');
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('and the types are real: a wrong argument type is a compile error', () => {
    writeFileSync(join(dir, 'consumer/wrong.ts'), "import { RingfenceClient } from 'ringfence/sdk';\nawait new RingfenceClient().encrypt(42, 'not bytes');\n");
    const r = typecheck('wrong.ts');
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/wrong\.ts\(2,\d+\): error TS2345/);
  });

  it('for await over a stream gives Buffers, not any (review by helper-178)', () => {
    const program = [
      "import { RingfenceClient } from 'ringfence/sdk';",
      'const client = new RingfenceClient();',
      "for await (const piece of client.encryptStream('k')) console.log(piece.toString('base64'));",
      'for await (const piece of client.decryptStream()) { const n: number = piece; }',
    ].join('\n');
    writeFileSync(join(dir, 'consumer/iterate.ts'), program);
    const r = typecheck('iterate.ts');
    expect(r.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^iterate\.ts\(4,\d+\): error TS2322: Type 'Buffer.*' is not assignable to type 'number'/)]);
  });

  it("`await using` a client and a session compiles, as the README says (review by helper-211)", () => {
    const program = [
      "import { RingfenceClient } from 'ringfence/sdk';",
      'await using client = new RingfenceClient();',
      'await using session = client.session();',
      "await session.hash('x');",
    ].join('\n');
    writeFileSync(join(dir, 'consumer/using.ts'), program);
    const r = typecheck('using.ts');
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('batch items can be named and built apart from the call (review by helper-117: the types were not exported)', () => {
    const program = [
      "import { RingfenceClient, batchResults, type BatchEncryptItem, type BatchDecryptItem, type BatchComputeMacItem } from 'ringfence/sdk';",
      "const items: BatchEncryptItem[] = [{ keyName: 'k', plaintext: new Uint8Array([1]), associatedData: new Uint8Array() }];",
      'const client = new RingfenceClient();',
      'const sealed = batchResults(await client.batchEncrypt(items));',
      "const back: BatchDecryptItem[] = sealed.map((r) => ({ ciphertext: r instanceof Error ? new Uint8Array() : r.ciphertext }));",
      'await client.batchDecrypt(back);',
      "const macs: BatchComputeMacItem[] = [{ keyName: 'm', data: new Uint8Array([2]) }];",
      'await client.batchComputeMac(macs);',
      "const wrong: BatchEncryptItem = { keyName: 7 };",
    ].join('\n');
    writeFileSync(join(dir, 'consumer/batch.ts'), program);
    const r = typecheck('batch.ts');
    // Only the last line is wrong: the names exist and describe the items.
    expect(r.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^batch\.ts\(9,\d+\): error TS2322/)]);
  });
});
