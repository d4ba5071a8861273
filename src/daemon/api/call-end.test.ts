/**
 * whenHalfClosedEnds against a real grpc-js server and client on a Unix socket: the private field it
 * reads (a grpc-js upgrade that moves it fails here), and what a normal end, a client's cancel
 * (END_STREAM, then RST_STREAM) and a stream that is not half-closed look like to it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AUDIT_WAIT_MS, goneReason, http2StreamOf, whenHalfClosedEnds, type GoneReason } from './call-end.js';

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const definition = {
  collect: { path: '/t.T/Collect', requestStream: true, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  echo: { path: '/t.T/Echo', requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
} satisfies grpc.ServiceDefinition;

let dir: string;
let server: grpc.Server;
let oldServer: grpc.Server;
/** A server whose connections end 200 ms after they open, their calls 200 ms after that. */
let agingAddress: string;
let client: grpc.Client & Record<'collect' | 'echo', (...a: unknown[]) => never>;
/** What each call's whenHalfClosedEnds reported, by the call's first message. */
const ends = new Map<string, { gone: GoneReason | undefined; found: boolean }>();
const waiters = new Map<string, () => void>();
const record = (tag: string, found: boolean) => (gone: GoneReason | undefined) => {
  ends.set(tag, { gone, found });
  waiters.get(tag)?.();
};
const endOf = (tag: string) => (ends.has(tag) ? Promise.resolve(ends.get(tag)!) : new Promise<{ gone: GoneReason | undefined; found: boolean }>((r) => waiters.set(tag, () => r(ends.get(tag)!))));

const BIG = 200_000; // more than an HTTP/2 client's default window (65535)
const handlers = {
  // Answers once the client half-closes (BIG bytes for a tag starting "big"), then reports how the call ended.
  collect: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    let tag = '';
    call.on('data', (m: Buffer) => (tag ||= m.toString()));
    call.on('end', () => {
      // The answer goes out in the same tick as the half-close is seen, as the daemon's would.
      callback(null, tag.startsWith('big') ? Buffer.alloc(BIG) : Buffer.from('answer'));
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
};

async function serve(name: string, options: grpc.ServerOptions = {}): Promise<[grpc.Server, string]> {
  const s = new grpc.Server(options);
  s.addService(definition, handlers);
  const address = `unix:${join(dir, name)}`;
  await new Promise<void>((res, rej) => s.bindAsync(address, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  return [s, address];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rv-ce-'));
  const [s, address] = await serve('s.sock');
  server = s;
  [oldServer, agingAddress] = await serve('aging.sock', { 'grpc.max_connection_age_ms': 200, 'grpc.max_connection_age_grace_ms': 200 });
  client = new (grpc.makeGenericClientConstructor(definition, 'T'))(address, grpc.credentials.createInsecure()) as never;
});
afterAll(() => {
  client?.close();
  server?.forceShutdown();
  oldServer?.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** A Collect call by hand (node:http2) that sends `tag`, half-closes and reads nothing. */
function unreadCall(address: string, tag: string) {
  const session = http2.connect('http://localhost', { createConnection: () => net.createConnection(address.slice('unix:'.length)) });
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': '/t.T/Collect', 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  stream.pause();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(tag.length, 1);
  stream.end(Buffer.concat([prefix, Buffer.from(tag)]));
  return { session, stream };
}

// Seen in a loaded host run: a deadline timer fired while Date.now() was a millisecond short of the
// deadline, and the call was audited CANCELLED though its deadline had passed.
describe('goneReason', () => {
  it('an end within a few ms before the deadline is the deadline; one well before it a cancel; no deadline, a cancel', () => {
    const at = (ms: number) => ({ getDeadline: () => new Date(Date.now() + ms) });
    expect(goneReason(at(1))).toBe('DEADLINE_EXCEEDED');
    expect(goneReason(at(-1))).toBe('DEADLINE_EXCEEDED');
    expect(goneReason(at(1000))).toBe('CANCELLED');
    expect(goneReason({ getDeadline: () => Infinity })).toBe('CANCELLED');
  });
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

  // Found by review: a client that held its connection and read nothing held the audit line back for ever.
  it('a client that holds the connection and reads nothing: told after AUDIT_WAIT_MS, as answered', async () => {
    const { session, stream } = unreadCall(`unix:${join(dir, 's.sock')}`, 'big-unread');
    try {
      await vi.waitFor(() => expect(stream.state.localWindowSize).toBe(0)); // answered; the rest waits on flow control
      expect(await endOf('big-unread')).toEqual({ gone: undefined, found: true });
    } finally {
      session.destroy();
    }
  }, 5 * AUDIT_WAIT_MS);

  // Found by review: the server ending the connection closes its streams with NO_ERROR, answered or not.
  it('the server ends the connection (max connection age) before the answer went out: CANCELLED', async () => {
    const { session } = unreadCall(agingAddress, 'big-aged');
    try {
      expect(await endOf('big-aged')).toEqual({ gone: 'CANCELLED', found: true });
    } finally {
      session.destroy();
    }
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
