import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CommandError } from './args.js';
import { openInput, openOutput, writeAll } from './io.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ringfence-io-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('openInput', () => {
  test('a small input is read whole by readHead', async () => {
    const data = Buffer.from([0, 0xff, 0x0a, 0x0d, 0x80]);
    const input = openInput(undefined, Readable.from([data]));
    const head = await input.readHead(1024);
    expect(head).toEqual({ bytes: data, complete: true });
  });

  test('a large input: readHead stops after more than the limit, rest() yields every byte once, in order', async () => {
    const data = randomBytes(300_000);
    const pieces = [data.subarray(0, 1), data.subarray(1, 70_000), data.subarray(70_000, 200_000), data.subarray(200_000)];
    const input = openInput('-', Readable.from(pieces));
    const head = await input.readHead(65_536);
    expect(head.complete).toBe(false);
    expect(head.bytes.length).toBeGreaterThan(65_536);
    expect(head.bytes.length).toBeLessThan(data.length);
    expect((await collect(input.rest())).equals(data)).toBe(true);
  });

  test('readHead can be called again with a larger limit', async () => {
    const data = randomBytes(100_000);
    const input = openInput('-', Readable.from([data.subarray(0, 10), data.subarray(10, 50_000), data.subarray(50_000)]));
    expect((await input.readHead(5)).bytes).toEqual(data.subarray(0, 10));
    const all = await input.readHead(1_000_000);
    expect(all.complete).toBe(true);
    expect(all.bytes.equals(data)).toBe(true);
  });

  test('with wipeCopies, pieces copied into one buffer are zeroed (for key material)', async () => {
    const pieces = [Buffer.from([1, 2, 3]), Buffer.from([4, 5])];
    const head = await openInput('-', Readable.from(pieces)).readHead(100, true);
    expect(head.bytes).toEqual(Buffer.from([1, 2, 3, 4, 5]));
    expect(pieces).toEqual([Buffer.alloc(3), Buffer.alloc(2)]);
    const kept = [Buffer.from([1]), Buffer.from([2])];
    await openInput('-', Readable.from(kept)).readHead(100);
    expect(kept).toEqual([Buffer.from([1]), Buffer.from([2])]);
  });

  test('empty input', async () => {
    const input = openInput(undefined, Readable.from([]));
    expect(await input.readHead(10)).toEqual({ bytes: Buffer.alloc(0), complete: true });
  });

  test('files: size known; a missing file or a directory is a CommandError naming it', async () => {
    const path = join(dir, 'in.bin');
    writeFileSync(path, randomBytes(1000));
    const input = openInput(path);
    expect(input.size).toBe(1000);
    expect((await input.readHead(10_000)).bytes).toEqual(readFileSync(path));
    expect(() => openInput(join(dir, 'nope'))).toThrow(CommandError);
    expect(() => openInput(join(dir, 'nope'))).toThrow(/nope: ENOENT/);
    expect(() => openInput(dir)).toThrow(/is a directory/);
  });
});

describe('openOutput', () => {
  test('a file appears under its name only on commit, mode 0600, and no temporary file remains', async () => {
    const path = join(dir, 'out.bin');
    const out = openOutput(path);
    const data = randomBytes(50_000);
    out.stream.write(data);
    expect(existsSync(path)).toBe(false);
    await out.commit();
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['out.bin']);
  });

  test('abort leaves nothing, and an existing file untouched', async () => {
    const path = join(dir, 'out.bin');
    writeFileSync(path, 'OLD');
    const out = openOutput(path);
    out.stream.write('partial');
    await out.abort();
    expect(readFileSync(path, 'utf8')).toBe('OLD');
    expect(readdirSync(dir)).toEqual(['out.bin']);
  });

  test('writeAll to stdout writes the bytes unchanged', async () => {
    const sink = new PassThrough();
    const data = Buffer.from([0, 0xff, 0x0a]);
    const got = collect(sink);
    await writeAll(openOutput(undefined, sink), data);
    sink.end();
    expect(await got).toEqual(data);
  });

  test('a missing directory is a CommandError naming the file, before anything is created', async () => {
    const path = join(dir, 'missing-dir', 'out.bin');
    expect(() => openOutput(path)).toThrow(CommandError);
    expect(() => openOutput(path)).toThrow(`cannot write ${path}: directory ${join(dir, 'missing-dir')} does not exist`);
  });
});
