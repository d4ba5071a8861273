import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { CommandError } from './args.js';
import { openInput, openOutput, writeAll } from './io.js';

// Runs once, just before the kernel's realpath resolves: something changed while -o is checked.
const beforeRealpath = vi.hoisted(() => ({ once: undefined as (() => void) | undefined }));
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const native = ((path: string, ...rest: unknown[]) => {
    const hook = beforeRealpath.once;
    beforeRealpath.once = undefined;
    hook?.();
    return (real.realpathSync.native as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof real.realpathSync.native;
  const realpathSync = Object.assign((...a: Parameters<typeof real.realpathSync>) => real.realpathSync(...a), real.realpathSync, { native });
  return { ...real, realpathSync, default: { ...real, realpathSync } };
});

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

  test("as root, FILE's directory swapped for a symlink to another directory after the check: the file there is not replaced, and the output lands in the directory checked", async () => {
    // Root replaces uid 4321's sub/passwd (keeping its owner); that user, who owns the parent,
    // moves sub away and puts a link to root's directory in its place before anything is created.
    const home = join(dir, 'home');
    const sub = join(home, 'sub');
    mkdirSync(sub, { recursive: true });
    chownSync(home, 4321, 4321);
    chownSync(sub, 4321, 4321);
    const etc = join(dir, 'etc');
    mkdirSync(etc);
    writeFileSync(join(etc, 'passwd'), 'root only');
    chmodSync(join(etc, 'passwd'), 0o644);
    const path = join(sub, 'passwd');
    writeFileSync(path, 'OLD');
    chownSync(path, 4321, 4321);
    chmodSync(path, 0o644);
    const out = openOutput(path);
    const moved = join(home, 'moved');
    renameSync(sub, moved);
    symlinkSync(etc, sub);
    out.stream.write('new');
    await out.commit();
    const st = statSync(join(etc, 'passwd'));
    expect([st.uid, st.gid, readFileSync(join(etc, 'passwd'), 'utf8'), readdirSync(etc)]).toEqual([0, 0, 'root only', ['passwd']]);
    const landed = statSync(join(moved, 'passwd'));
    expect([landed.uid, landed.gid, landed.mode & 0o7777, readFileSync(join(moved, 'passwd'), 'utf8'), readdirSync(moved)]).toEqual([4321, 4321, 0o644, 'new', ['passwd']]);
  });

  test("as root, FILE's directory swapped for a symlink while FILE is checked (after its stat): refused, and neither file is touched", async () => {
    // The owner and mode copied are read through the path; the directory, named by realpath a
    // moment later, is the link's target: its passwd would become uid 4321's.
    const home = join(dir, 'home');
    const sub = join(home, 'sub');
    mkdirSync(sub, { recursive: true });
    chownSync(home, 4321, 4321);
    const etc = join(dir, 'etc');
    mkdirSync(etc);
    writeFileSync(join(etc, 'passwd'), 'root only');
    const path = join(sub, 'passwd');
    writeFileSync(path, 'OLD');
    chownSync(path, 4321, 4321);
    const moved = join(home, 'moved');
    beforeRealpath.once = () => {
      renameSync(sub, moved);
      symlinkSync(etc, sub);
    };
    let err: unknown;
    try {
      const out = openOutput(path);
      out.stream.write('new');
      await out.commit();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message).toBe(`cannot write ${path}: it changed after it was checked; nothing was written`);
    const st = statSync(join(etc, 'passwd'));
    expect([st.uid, readFileSync(join(etc, 'passwd'), 'utf8'), readdirSync(etc), readFileSync(join(moved, 'passwd'), 'utf8'), readdirSync(moved)]).toEqual([0, 'root only', ['passwd'], 'OLD', ['passwd']]);
  });

  test("a new FILE's directory swapped for a symlink while it is checked (after its stat): refused, and nothing is created in either", async () => {
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    const other = join(dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'new.bin'), 'THEIRS');
    const realOther = realpathSync.native(other);
    const moved = join(dir, 'moved');
    beforeRealpath.once = () => {
      renameSync(sub, moved);
      symlinkSync(other, sub);
    };
    const path = join(sub, 'new.bin');
    expect(() => openOutput(path)).toThrow(new CommandError(`cannot write ${path}: directory ${realOther} changed after it was checked; nothing was written`));
    expect([readdirSync(other), readFileSync(join(other, 'new.bin'), 'utf8'), readdirSync(moved)]).toEqual([['new.bin'], 'THEIRS', []]);
  });

  test("a new FILE's directory swapped after the check: nothing is created in the link's target", async () => {
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    const other = join(dir, 'other');
    mkdirSync(other);
    const out = openOutput(join(sub, 'new.bin'));
    const moved = join(dir, 'moved');
    renameSync(sub, moved);
    symlinkSync(other, sub);
    out.stream.write('new');
    await out.commit();
    expect(readdirSync(other)).toEqual([]);
    expect([readFileSync(join(moved, 'new.bin'), 'utf8'), statSync(join(moved, 'new.bin')).mode & 0o777]).toEqual(['new', 0o600]);
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
