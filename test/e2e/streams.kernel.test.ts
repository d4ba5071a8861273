/**
 * EncryptStream / DecryptStream end to end: round trips of any size, detection of truncation,
 * reordering, duplication and splicing, and bounded daemon memory on a 1 GiB stream (the daemon's
 * RSS, read from /proc, is the independent truth).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorReason, RingfenceClient, isFailedPrecondition, isInvalidArgument, isResourceExhausted } from '../../src/client/sdk/index.js';
import { TestDaemon } from '../support/daemon.js';
import { failure } from '../support/failure.js';

const HEADER = 40;
const PREFIX = 17;

async function encryptAll(client: RingfenceClient, key: string, data: Buffer, aad: string, chunkBytes: number): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), client.encryptStream(key, { associatedData: aad, chunkBytes }), new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

async function decryptAll(client: RingfenceClient, ct: Buffer, aad: string, slice = 100_003): Promise<Buffer> {
  const out: Buffer[] = [];
  const pieces = function* () {
    for (let i = 0; i < ct.length; i += slice) yield ct.subarray(i, i + slice);
  };
  await pipeline(Readable.from(pieces()), client.decryptStream({ associatedData: aad }), new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

/** The chunks of a stream ciphertext: [start, end) of each, after the header. */
function chunks(ct: Buffer): [number, number][] {
  const list: [number, number][] = [];
  for (let at = HEADER; at < ct.length; ) {
    const end = at + PREFIX + ct.readUInt32BE(at + 1);
    list.push([at, end]);
    at = end;
  }
  return list;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** A process's user and system CPU seconds (/proc/PID/stat fields 14 and 15, in USER_HZ = 100 ticks). */
function cpuSeconds(pid: number | 'self'): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

describe('streaming encryption end to end', () => {
  let daemon: TestDaemon;
  let client: RingfenceClient;

  beforeAll(async () => {
    daemon = await TestDaemon.start();
    client = new RingfenceClient({ socketPath: daemon.socket });
    await client.createKey('s');
    await client.createKey('other');
  });
  afterAll(async () => {
    await client?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it('round-trips empty, small and multi-chunk payloads, sliced anywhere', async () => {
    for (const size of [0, 1, 65_536, 3 * 1024 * 1024 + 7]) {
      const data = randomBytes(size);
      const ct = await encryptAll(client, 's', data, 'aad', 256 * 1024);
      expect(ct.subarray(0, 3).equals(Buffer.from([0x52, 0x46, 2]))).toBe(true);
      expect((await decryptAll(client, ct, 'aad')).equals(data)).toBe(true);
      if (size <= 65_536) expect((await decryptAll(client, ct, 'aad', 4099)).equals(data)).toBe(true);
    }
  });

  it('a key disabled mid-stream stops EncryptStream and DecryptStream at their next chunk', async () => {
    const until = async (cond: () => boolean) => {
      for (let i = 0; !cond(); i++) {
        if (i > 600) throw new Error('timed out waiting for the stream');
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const stopped = (s: NodeJS.ReadWriteStream, got: Buffer[]) =>
      new Promise<unknown>((resolve) => {
        s.on('data', (c: Buffer) => got.push(c));
        s.on('error', resolve);
        s.on('end', () => resolve(undefined));
      });
    const disabled = (e: unknown) => isFailedPrecondition(e) && (e as { reasonName?: string }).reasonName === 'KEY_DISABLED';

    await client.createKey('mid-encrypt');
    const enc = client.encryptStream('mid-encrypt', { chunkBytes: 1024 });
    const sealed: Buffer[] = [];
    const encEnd = stopped(enc, sealed);
    enc.write(randomBytes(3 * 1024));
    await until(() => Buffer.concat(sealed).length >= HEADER + PREFIX + 1024 + 16);
    await client.disableKey('mid-encrypt');
    enc.end(randomBytes(3 * 1024));
    const encErr = await encEnd;
    expect(disabled(encErr), String(encErr)).toBe(true);
    expect(Buffer.concat(sealed).length).toBeLessThan(HEADER + 6 * (PREFIX + 1024 + 16));

    await client.createKey('mid-decrypt');
    const ct = await encryptAll(client, 'mid-decrypt', randomBytes(6 * 1024), '', 1024);
    const [, second] = chunks(ct);
    // Small messages: the default (256 KiB) would hold these few KiB back until the end.
    const dec = client.decryptStream({ chunkBytes: 1024 });
    const opened: Buffer[] = [];
    const decEnd = stopped(dec, opened);
    dec.write(ct.subarray(0, second![1]));
    await until(() => Buffer.concat(opened).length >= 1024);
    await client.disableKey('mid-decrypt');
    dec.end(ct.subarray(second![1]));
    const decErr = await decEnd;
    expect(disabled(decErr), String(decErr)).toBe(true);
    expect(Buffer.concat(opened).length).toBeLessThan(6 * 1024);
  });

  it('detects truncation, reordering, duplication, splicing and wrong associated data', async () => {
    const data = randomBytes(5 * 64 * 1024);
    const ct = await encryptAll(client, 's', data, 'aad', 64 * 1024);
    const list = chunks(ct);
    expect(list.length).toBeGreaterThanOrEqual(5);
    const part = (i: number) => ct.subarray(list[i]![0], list[i]![1]);
    const header = ct.subarray(0, HEADER);
    const reason = async (bytes: Buffer, aad = 'aad') => {
      const err = await failure(decryptAll(client, bytes, aad));
      expect(isInvalidArgument(err), String(err)).toBe(true);
      return ErrorReason[err.reason];
    };
    expect(await reason(ct.subarray(0, list.at(-1)![0]))).toBe('STREAM_TRUNCATED'); // final chunk dropped
    expect(await reason(ct.subarray(0, ct.length - 5))).toBe('STREAM_TRUNCATED'); // cut inside the final chunk
    expect(await reason(Buffer.concat([header, part(1), part(0), ...list.slice(2).map((_, i) => part(i + 2))]))).toBe('AUTHENTICATION_FAILED');
    expect(await reason(Buffer.concat([header, part(0), part(0), ...list.slice(1).map((_, i) => part(i + 1))]))).toBe('AUTHENTICATION_FAILED');
    const other = await encryptAll(client, 's', randomBytes(data.length), 'aad', 64 * 1024);
    const otherChunks = chunks(other);
    expect(await reason(Buffer.concat([header, part(0), other.subarray(otherChunks[1]![0], otherChunks[1]![1]), ...list.slice(2).map((_, i) => part(i + 2))]))).toBe('AUTHENTICATION_FAILED');
    expect(await reason(Buffer.concat([ct, Buffer.from([0])]))).toBe('STREAM_PROTOCOL_VIOLATION');
    expect(await reason(ct, 'other aad')).toBe('AUTHENTICATION_FAILED');
    const unary = Buffer.from((await client.encrypt('s', 'x')).ciphertext);
    expect(await reason(unary)).toMatch(/CIPHERTEXT_MALFORMED|CIPHERTEXT_FORMAT_UNSUPPORTED/);
    // A chunk longer than this daemon's limit (as from a daemon with a larger maxStreamChunkBytes)
    // says which limit and how much: refused before its bytes are buffered.
    const long = Buffer.from(ct);
    const tag = long.readUInt32BE(list[0]![0] + 1) - 64 * 1024;
    long.writeUInt32BE(2 * 1024 * 1024 + tag, list[0]![0] + 1);
    const tooLong = await failure(decryptAll(client, long, 'aad'));
    expect([isResourceExhausted(tooLong), ErrorReason[tooLong.reason], tooLong.metadata]).toEqual([true, 'PAYLOAD_TOO_LARGE', { field: 'chunk', actual_bytes: '2097152', limit_bytes: '1048576' }]);
    expect(tooLong.message).toContain('maxStreamChunkBytes');
  });

  // The gigabyte issue 3 names, in every run. Under qemu TCG one guest CPU carries client, daemon
  // and kernel crypto: 1 GiB took 819 s on lts (qemu64 CPU, 2026-12-07); until the daemon was bundled
  // (daemon starts halved the suite's time) it did not fit CI with the rest, and ran 256 MiB. The
  // daemon's peak grows little with the length (2026-12-07: RSS growth 25-41 MiB at 128 MiB, 31-39
  // at 256 MiB, 44-49 MiB at 1 GiB). RINGFENCE_BIG_STREAM_BYTES=268435456 (256 MiB) for a quicker run.
  const total = Number(process.env.RINGFENCE_BIG_STREAM_BYTES ?? 1024 * 1024 * 1024);
  it(`a ${(total / 2 ** 20).toFixed(0)} MiB stream round-trips with daemon memory growth under 64 MiB`, async () => {
    const block = randomBytes(1024 * 1024);
    const source = function* () {
      for (let sent = 0, i = 0; sent < total; sent += block.length, i++) {
        const b = Buffer.from(block);
        b.writeUInt32BE(i, 0); // every block differs, so reordering would show
        yield b.subarray(0, Math.min(block.length, total - sent));
      }
    };
    // Every byte received is compared with the byte sent at that offset (block, with the block's
    // index in its first 4 bytes): exact, and unlike a SHA-256 of both sides (2 GiB, about 45 s of
    // TCG CPU) nearly free.
    let received = 0;
    let firstMismatch = -1;
    const check = (c: Buffer) => {
      for (let off = 0; off < c.length && firstMismatch < 0; ) {
        const pos = received + off;
        const index = Math.floor(pos / block.length);
        const within = pos % block.length;
        const n = Math.min(c.length - off, block.length - within);
        for (let j = within; j < Math.min(4, within + n); j++) {
          if (c[off + j - within] !== (index >>> (8 * (3 - j))) % 256) firstMismatch = pos + j - within;
        }
        const k = Math.max(0, Math.min(n, 4 - within));
        if (firstMismatch < 0 && !c.subarray(off + k, off + n).equals(block.subarray(within + k, within + n))) firstMismatch = pos;
        off += n;
      }
      received += c.length;
    };
    const pid = daemon.pid!;
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 250);
    // Where the guest's time goes (client and daemon share its one CPU), printed with the result.
    const cpu0 = { daemon: cpuSeconds(pid), client: cpuSeconds('self') };
    const started = Date.now();
    try {
      await pipeline(
        Readable.from(source()),
        client.encryptStream('s', { associatedData: 'big', chunkBytes: 1024 * 1024 }),
        client.decryptStream({ associatedData: 'big' }),
        new Writable({ write: (c: Buffer, _e, cb) => (check(c), cb()) }),
      );
    } finally {
      clearInterval(sampler);
    }
    const seconds = (Date.now() - started) / 1000;
    const cpu = (p: 'daemon' | 'client', now: { user: number; system: number }) => `${p} CPU ${(now.user - cpu0[p].user).toFixed(0)} s user + ${(now.system - cpu0[p].system).toFixed(0)} s system`;
    console.log(`big stream: ${total} bytes in ${seconds.toFixed(1)} s (${(total / 1024 / 1024 / seconds).toFixed(1)} MiB/s through encrypt+decrypt), daemon RSS ${(baseline / 2 ** 20).toFixed(1)} -> peak ${(peak / 2 ** 20).toFixed(1)} MiB; ${cpu('daemon', cpuSeconds(pid))}, ${cpu('client', cpuSeconds('self'))}`);
    expect(received).toBe(total);
    expect(firstMismatch).toBe(-1);
    expect(peak - baseline).toBeLessThan(64 * 1024 * 1024);
  }, 3_600_000);
});
