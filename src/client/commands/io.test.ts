import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
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

  test("as root, the temporary file swapped for a symlink in the file owner's directory: the link's target is neither chowned nor chmodded", async () => {
    // Root replaces uid 12345's file in that user's directory (it keeps its owner and mode); that
    // user renames the temporary file they can see there into a link to a file of root's.
    const home = join(dir, 'home');
    mkdirSync(home);
    chownSync(home, 12345, 12345);
    const victim = join(dir, 'shadow');
    writeFileSync(victim, 'root only');
    chmodSync(victim, 0o600);
    const path = join(home, 'out.bin');
    writeFileSync(path, 'OLD');
    chownSync(path, 12345, 12345);
    chmodSync(path, 0o644);
    const out = openOutput(path);
    out.stream.write('new');
    await once(out.stream, 'ready');
    const tmp = join(home, readdirSync(home).find((n) => n.endsWith('.ringfence-tmp'))!);
    unlinkSync(tmp);
    symlinkSync(victim, tmp);
    await out.commit().catch(() => {});
    const st = statSync(victim);
    expect([st.uid, st.gid, st.mode & 0o7777, readFileSync(victim, 'utf8')]).toEqual([0, 0, 0o600, 'root only']);
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

describe('openOutput onto a device or FIFO', () => {
  // openOutput checks the path at once; the stream opens it on a later tick (a FIFO's open waits
  // for a reader), so what the test puts there in between is what the open finds.
  const PAST = new Date('2020-01-02T03:04:05Z');
  const fifoAt = (name: string) => {
    const path = join(dir, name);
    execFileSync('mkfifo', [path]);
    return path;
  };
  const fileWith = (path: string, text: string) => {
    writeFileSync(path, text);
    utimesSync(path, PAST, PAST);
  };
  const changed = (path: string, now: string) => `cannot write ${path}: it changed after it was checked (now ${now}); nothing was written`;

  test('a FIFO swapped for a file, or a link to one, after its check: that file is neither truncated nor written, and a CommandError says why', async () => {
    const swapped = fifoAt('swapped');
    const out = openOutput(swapped);
    unlinkSync(swapped);
    fileWith(swapped, 'OLD');
    const err = await writeAll(out, 'NEW').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message).toBe(changed(swapped, 'a regular file'));
    expect([readFileSync(swapped, 'utf8'), statSync(swapped).mtime]).toEqual(['OLD', PAST]);

    // Through a link, and written as a stream is (then commit): the message is not wrapped again.
    const victim = join(dir, 'victim');
    fileWith(victim, 'OLD');
    const linked = fifoAt('linked');
    const streamed = openOutput(linked);
    unlinkSync(linked);
    symlinkSync(victim, linked);
    streamed.stream.end('NEW');
    await expect(streamed.commit()).rejects.toThrow(new CommandError(changed(linked, 'a regular file')));
    expect([readFileSync(victim, 'utf8'), statSync(victim).mtime]).toEqual(['OLD', PAST]);
  });

  test("a FIFO swapped for another user's FIFO after its check gets nothing, even on the same inode number", async () => {
    const path = fifoAt('fifo');
    const out = openOutput(path);
    // Removed first, so the new FIFO may take the freed inode number (ext4 gives it at once).
    unlinkSync(path);
    execFileSync('mkfifo', [path]);
    chownSync(path, 12345, 12345);
    // Held open for reading and writing, so the open for writing does not wait for a reader.
    const held = openSync(path, 'r+');
    const peek = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      await expect(writeAll(out, 'NEW')).rejects.toThrow(new CommandError(changed(path, 'another FIFO')));
      // Empty, while a writer (held) is open: EAGAIN, not end of file.
      expect(() => readSync(peek, Buffer.alloc(8))).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
    } finally {
      closeSync(peek);
      closeSync(held);
    }
  });

  test('a FIFO with a reader, a link to it, and /dev/null are still written in place', async () => {
    const fifo = fifoAt('pipe');
    const link = join(dir, 'link');
    symlinkSync(fifo, link);
    for (const path of [fifo, link]) {
      const parts: Buffer[] = [];
      const read = new Promise<void>((resolve, reject) => createReadStream(fifo).on('data', (c) => parts.push(c as Buffer)).on('end', () => resolve()).on('error', reject));
      const data = randomBytes(200_000);
      await writeAll(openOutput(path), data);
      await read;
      expect(Buffer.concat(parts).equals(data), path).toBe(true);
    }
    await writeAll(openOutput('/dev/null'), 'discarded');
    expect(readdirSync(dir).sort()).toEqual(['link', 'pipe']);
  });
});
