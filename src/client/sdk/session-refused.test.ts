/**
 * A Session stream the daemon refused (HTTP/2 REFUSED_STREAM: nothing on it was read or done, RFC
 * 9113 section 8.7), as the daemon refuses a stream that crosses its idle or age GOAWAY. grpc-js
 * replays a refused stream once, and only while what was written on it fits its 1 MiB per-call
 * retry buffer; past that its operations failed with an UNAVAILABLE that looked like any lost
 * stream ("may have run"), though none was done (review by helper-191). The server here is plain
 * node:http2 speaking gRPC's framing by hand, so it refuses exactly the streams a test asks for.
 */
import * as http2 from 'node:http2';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRequestSchema, SessionResponseSchema, type SessionRequest } from '../../gen/ringfence/v1/session_pb.js';
import { RingfenceClient, isUnavailable } from './index.js';

/** Serves Session streams, refusing stream n (from 0) when `refuse(n)`; others hash each operation's data. */
async function startServer(refuse: (n: number) => boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'rf-sess-refused-'));
  const socketPath = join(dir, 's.sock');
  let streams = 0;
  /** The data of every operation a stream that was not refused read, in order. */
  const done: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream) => {
    const n = streams++;
    stream.on('error', () => {});
    if (refuse(n)) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    let buffered = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
        const end = 5 + buffered.readUInt32BE(1);
        const message = fromBinary(SessionRequestSchema, buffered.subarray(5, end));
        buffered = buffered.subarray(end);
        for (const r of [message, ...message.more] as SessionRequest[]) {
          if (r.op.case !== 'hash') continue;
          done.push(Buffer.from(r.op.value.data).toString('latin1'));
          const answer = toBinary(SessionResponseSchema, create(SessionResponseSchema, { id: r.id, result: { case: 'hash', value: { digest: createHash('sha256').update(r.op.value.data).digest() } } }));
          const prefix = Buffer.alloc(5);
          prefix.writeUInt32BE(answer.length, 1);
          stream.write(Buffer.concat([prefix, answer]));
        }
      }
    });
    stream.on('end', () => stream.end());
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    done,
    streams: () => streams,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let server: Awaited<ReturnType<typeof startServer>> | undefined;
let client: RingfenceClient | undefined;
afterEach(async () => {
  await client?.close();
  await server?.close();
  server = client = undefined;
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
/** `n` inputs of `size` bytes, each filled with its own character (so the server's record tells them apart). */
const inputs = (n: number, size: number) => Array.from({ length: n }, (_, i) => Buffer.alloc(size, 0x20 + i));

describe('a Session stream the daemon refused (REFUSED_STREAM), its operations not done', () => {
  // 64 operations of 20 KiB: over grpc-js's 1 MiB replay buffer, so grpc-js does not send them again itself.
  it('sends them again on a fresh stream, each done once: a burst larger than grpc-js replays', async () => {
    server = await startServer((n) => n === 0);
    client = new RingfenceClient({ socketPath: server.socketPath });
    const session = client.session({ maxInFlight: 64 });
    const data = inputs(64, 20 * 1024);
    const digests = await Promise.all(data.map((d) => session.hash(d).then((r) => Buffer.from(r.digest).toString('hex'))));
    expect(digests).toEqual(data.map(sha256));
    expect([...server.done].sort()).toEqual(data.map((d) => d.toString('latin1')).sort());
    expect(server.streams()).toBe(2);
  });

  it('sends them again when refused twice in a row (grpc-js replays a small burst once, then gives up)', async () => {
    server = await startServer((n) => n < 2);
    client = new RingfenceClient({ socketPath: server.socketPath });
    const session = client.session();
    const data = inputs(10, 100);
    const digests = await Promise.all(data.map((d) => session.hash(d).then((r) => Buffer.from(r.digest).toString('hex'))));
    expect(digests).toEqual(data.map(sha256));
    expect(server.done).toHaveLength(10);
  });

  it('gives up with UNAVAILABLE when every stream is refused, after a few attempts', async () => {
    server = await startServer(() => true);
    client = new RingfenceClient({ socketPath: server.socketPath });
    const session = client.session({ maxInFlight: 64 });
    const outcomes = await Promise.all(inputs(64, 20 * 1024).map((d) => session.hash(d).then(() => undefined, (e: unknown) => e)));
    for (const e of outcomes) {
      expect(isUnavailable(e)).toBe(true);
      expect((e as Error).message).toBe('Stream refused by server');
    }
    // The first attempt and two more, as a unary call (transport.ts).
    expect(server.streams()).toBe(3);
    expect(server.done).toEqual([]);
  });
});
