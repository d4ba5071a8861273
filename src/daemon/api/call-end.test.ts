/**
 * whenHalfClosedEnds against a real grpc-js server and client on a Unix socket: the private field it
 * reads (a grpc-js upgrade that moves it fails here), and what a normal end, a client's cancel
 * (END_STREAM, then RST_STREAM) and a stream that is not half-closed look like to it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http2StreamOf, whenHalfClosedEnds, type GoneReason } from './call-end.js';

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const definition = {
  collect: { path: '/t.T/Collect', requestStream: true, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  echo: { path: '/t.T/Echo', requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
} satisfies grpc.ServiceDefinition;

let dir: string;
let server: grpc.Server;
let client: grpc.Client & Record<'collect' | 'echo', (...a: unknown[]) => never>;
/** What each call's whenHalfClosedEnds reported, by the call's first message. */
const ends = new Map<string, { gone: GoneReason | undefined; found: boolean }>();
const waiters = new Map<string, () => void>();
const record = (tag: string, found: boolean) => (gone: GoneReason | undefined) => {
  ends.set(tag, { gone, found });
  waiters.get(tag)?.();
};
const endOf = (tag: string) => (ends.has(tag) ? Promise.resolve(ends.get(tag)!) : new Promise<{ gone: GoneReason | undefined; found: boolean }>((r) => waiters.set(tag, () => r(ends.get(tag)!))));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rv-ce-'));
  server = new grpc.Server();
  server.addService(definition, {
    // Answers once the client half-closes, then reports how the call ended.
    collect: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      let tag = '';
      call.on('data', (m: Buffer) => (tag ||= m.toString()));
      call.on('end', () => {
        // The answer goes out in the same tick as the half-close is seen, as the daemon's would.
        callback(null, Buffer.from('answer'));
        whenHalfClosedEnds(call as never, record(tag, http2StreamOf(call) !== undefined));
      });
    },
    // Fails the stream at its first message, before any half-close.
    echo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.once('data', (m: Buffer) => {
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'no' });
        whenHalfClosedEnds(call as never, record(m.toString(), http2StreamOf(call) !== undefined));
      });
    },
  });
  const address = `unix:${join(dir, 's.sock')}`;
  await new Promise<void>((res, rej) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  client = new (grpc.makeGenericClientConstructor(definition, 'T'))(address, grpc.credentials.createInsecure()) as never;
});
afterAll(() => {
  client?.close();
  server?.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

describe('whenHalfClosedEnds', () => {
  it('a half-close answered normally: ends with no reason, once the answer went out', async () => {
    const answered = new Promise<Buffer | undefined>((r) => {
      const call = client.collect((_e: unknown, res: Buffer) => r(res)) as grpc.ClientWritableStream<Buffer>;
      call.write(Buffer.from('normal'));
      call.end();
    });
    expect(String(await answered)).toBe('answer');
    expect(await endOf('normal')).toEqual({ gone: undefined, found: true });
  });

  it("a grpc-js client's cancel (END_STREAM, then RST_STREAM): CANCELLED, though the server saw a half-close first", async () => {
    const status = new Promise<grpc.ServiceError | null>((r) => {
      const call = client.collect((e: grpc.ServiceError | null) => r(e)) as grpc.ClientWritableStream<Buffer>;
      call.write(Buffer.from('cancelled'), () => setTimeout(() => call.cancel(), 50));
    });
    expect((await status)?.code).toBe(grpc.status.CANCELLED);
    expect(await endOf('cancelled')).toEqual({ gone: 'CANCELLED', found: true });
  });

  it('a stream not half-closed ends with the daemon status, told at once', async () => {
    const status = new Promise<number>((r) => {
      const call = client.echo() as grpc.ClientDuplexStream<Buffer, Buffer>;
      call.on('error', (e: grpc.ServiceError) => r(e.code));
      call.write(Buffer.from('not-half-closed'));
    });
    expect(await status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await endOf('not-half-closed')).toEqual({ gone: undefined, found: true });
  });
});
