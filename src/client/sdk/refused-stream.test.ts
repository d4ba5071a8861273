/**
 * Unary calls replay a stream the server refused (HTTP/2 REFUSED_STREAM), whatever the request's
 * size, and nothing else. The server here is plain node:http2 speaking gRPC's framing by hand, so it
 * can refuse exactly the streams a test asks for, as the daemon does to a stream that crosses its
 * idle GOAWAY.
 */
import * as http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EncryptRequestSchema, EncryptResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { RingfenceClient, isCancelled, isRingfenceError, isUnavailable } from './index.js';

interface Seen {
  path: string;
  requestBytes: number;
  /** What an answered attempt asked to encrypt. */
  plaintext?: Buffer;
}

/** Answers stream n (from 0) as `plan(n)` says: refuse it, fail it with UNAVAILABLE, or encrypt. */
async function startServer(plan: (n: number) => 'refuse' | 'unavailable' | 'ok') {
  const dir = mkdtempSync(join(tmpdir(), 'rf-refused-'));
  const socketPath = join(dir, 's.sock');
  const seen: Seen[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const n = seen.length;
    const entry: Seen = { path: String(headers[':path']), requestBytes: 0 };
    seen.push(entry);
    const action = plan(n);
    stream.on('error', () => {}); // the refusal itself, reported on the server's side too
    if (action === 'refuse') {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const body: Buffer[] = [];
    stream.on('data', (c: Buffer) => body.push(c));
    stream.on('end', () => {
      const framed = Buffer.concat(body);
      entry.requestBytes = framed.readUInt32BE(1);
      const request = fromBinary(EncryptRequestSchema, framed.subarray(5));
      entry.plaintext = Buffer.from(request.plaintext);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () =>
        stream.sendTrailers(action === 'ok' ? { 'grpc-status': '0' } : { 'grpc-status': '14', 'grpc-message': 'processed, then unavailable' }),
      );
      if (action !== 'ok') return stream.end();
      const message = toBinary(EncryptResponseSchema, create(EncryptResponseSchema, { ciphertext: Buffer.from(`sealed ${request.plaintext.length}`), keyName: request.keyName, keyVersion: 1 }));
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(message.length, 1);
      stream.end(Buffer.concat([prefix, message]));
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    seen,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('unary calls and refused streams', () => {
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let client: RingfenceClient | undefined;
  beforeEach(() => {
    server = undefined;
    client = undefined;
  });
  afterEach(async () => {
    await client?.close();
    await server?.close();
  });

  // Over grpc-js's per-call retry buffer (1 MiB), where its own transparent retry stops: each
  // attempt below is then exactly one stream. (Small requests get grpc-js's one replay first.)
  const big = Buffer.alloc(1536 * 1024, 7);

  it('sends a refused request again, large or small, and the answer is the second attempt\'s', async () => {
    server = await startServer((n) => (n % 2 === 0 ? 'refuse' : 'ok'));
    client = new RingfenceClient({ socketPath: server.socketPath });
    const large = await client.encrypt('k', big);
    expect(Buffer.from(large.ciphertext).toString()).toBe(`sealed ${big.length}`);
    const small = await client.encrypt('k', 'hi');
    expect(Buffer.from(small.ciphertext).toString()).toBe('sealed 2');
    expect(server.seen.map((s) => s.path)).toEqual(Array(4).fill('/ringfence.v1.CryptoService/Encrypt'));
    // The refused attempts carried nothing the server read; the answered ones carried the request.
    expect(server.seen[1]!.requestBytes).toBeGreaterThan(big.length);
    expect(server.seen[3]!.requestBytes).toBeGreaterThan(2);
  });

  // Review by helper-144: each replay encoded the request again from the caller's buffer, so a
  // caller that wiped it once the call was made (importKey asks for that) had zeros sent. Large: every
  // attempt is the SDK's; small: grpc-js replays once from its own copy, then the SDK does.
  it('sends every attempt the bytes the call was made with, though the caller wiped its buffer at once', async () => {
    server = await startServer((n) => (n % 3 === 2 ? 'ok' : 'refuse'));
    client = new RingfenceClient({ socketPath: server.socketPath });
    for (const [size, fill] of [[big.length, 0xab], [100, 0xcd]] as const) {
      const plaintext = Buffer.alloc(size, fill);
      const call = client.encrypt('k', plaintext);
      plaintext.fill(0); // "wipe your copy afterwards"
      expect(Buffer.from((await call).ciphertext).toString()).toBe(`sealed ${size}`);
    }
    // What each stream carried, as "length x byte" (refused ones: nothing the server read).
    const carried = server.seen.map(({ plaintext: p }) => p && (p.equals(Buffer.alloc(p.length, p[0])) ? `${p.length} x ${p[0]}` : `${p.length} mixed`));
    expect(carried).toEqual([undefined, undefined, `${big.length} x ${0xab}`, undefined, undefined, `100 x ${0xcd}`]);
  });

  it('gives up with UNAVAILABLE once refused three times in a row', async () => {
    server = await startServer(() => 'refuse');
    client = new RingfenceClient({ socketPath: server.socketPath });
    const err = await client.encrypt('k', big).then(() => undefined, (e: unknown) => e);
    expect(isUnavailable(err)).toBe(true);
    expect(String((err as Error).message)).toMatch(/Stream refused by server/);
    expect(server.seen).toHaveLength(3);
  });

  it('never repeats a request the server processed, even when it answers UNAVAILABLE', async () => {
    server = await startServer(() => 'unavailable');
    client = new RingfenceClient({ socketPath: server.socketPath });
    const err = await client.encrypt('k', big).then(() => undefined, (e: unknown) => e);
    expect(isUnavailable(err)).toBe(true);
    expect(String((err as Error).message)).toMatch(/processed, then unavailable/);
    expect(server.seen).toHaveLength(1);
  });

  it('close() while a refused call waits to be sent again: the call fails as closed, a RingfenceError (found by review)', async () => {
    let closing: RingfenceClient | undefined;
    server = await startServer(() => {
      void closing?.close();
      return 'refuse';
    });
    client = closing = new RingfenceClient({ socketPath: server.socketPath });
    const err = await client.encrypt('k', big).then(() => undefined, (e: unknown) => e);
    expect([isRingfenceError(err), isCancelled(err), (err as Error).message]).toEqual([true, true, 'the client is closed']);
    expect(server.seen).toHaveLength(1);
  });

  it('does not send again once the caller aborted', async () => {
    // Aborted in the turn the refusal arrives, before the abort's listener cancels the call: the
    // retry's own check must answer with the refusal rather than start a second attempt (which the
    // abort would then cancel). Found by review: aborting earlier cancelled the call before it was
    // refused, so the check was never reached.
    const signal = { aborted: false, reason: new Error('the caller gave up'), addEventListener: () => {}, removeEventListener: () => {} };
    server = await startServer((n) => {
      if (n > 0) return 'ok';
      signal.aborted = true;
      return 'refuse';
    });
    client = new RingfenceClient({ socketPath: server.socketPath });
    const err = await client.encrypt('k', big, { signal: signal as unknown as AbortSignal }).then(() => undefined, (e: unknown) => e);
    // The refusal is what happened to the one attempt (an abort after a failure does not hide it).
    expect([isUnavailable(err), (err as Error).message]).toEqual([true, 'Stream refused by server']);
    expect(server.seen).toHaveLength(1);
  });
});
