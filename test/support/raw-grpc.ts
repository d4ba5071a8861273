/**
 * Clients that send the daemon what a well-behaved SDK never would, for the hostile-input tests:
 * raw bytes as gRPC message bodies (grpc-js with pass-through serializers, so the server decodes
 * them), and hand-made gRPC-over-HTTP/2 requests whose 5-byte length prefix can lie (node:http2).
 */
import * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { SessionResponseSchema } from '../../src/gen/ringfence/v1/session_pb.js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { readdirSync } from 'node:fs';

export interface RawOutcome {
  code: grpc.status;
  details: string;
  /** Response message bodies, undecoded. */
  responses: Buffer[];
}

const pass = (b: Buffer) => b;

export class RawGrpcClient {
  readonly client: grpc.Client;

  constructor(socketPath: string, private readonly timeoutMs = 120_000) {
    this.client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 16 * 1024 * 1024,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // A stream the daemon refused unprocessed (its idle GOAWAY crossed our HEADERS) is retried
      // by grpc-js only while the call's messages fit its retry buffer (1 MiB by default in grpc-js 1.14);
      // fuzz inputs can be larger, and would then fail UNAVAILABLE "Stream refused by server".
      'grpc.per_rpc_retry_buffer_size': 32 * 1024 * 1024,
      'grpc.retry_buffer_size': 64 * 1024 * 1024,
    });
  }

  private deadline(): grpc.CallOptions {
    return { deadline: Date.now() + this.timeoutMs };
  }

  unary(path: string, body: Buffer): Promise<RawOutcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(path, pass, pass, body, new grpc.Metadata(), this.deadline(), (err, res) =>
        resolve(err ? { code: err.code, details: err.details, responses: [] } : { code: grpc.status.OK, details: '', responses: res ? [res] : [] }),
      );
    });
  }

  clientStream(path: string, bodies: Buffer[]): Promise<RawOutcome> {
    return new Promise((resolve) => {
      const call = this.client.makeClientStreamRequest(path, pass, pass, new grpc.Metadata(), this.deadline(), (err, res) =>
        resolve(err ? { code: err.code, details: err.details, responses: [] } : { code: grpc.status.OK, details: '', responses: res ? [res] : [] }),
      );
      call.on('error', () => undefined); // the callback has it
      for (const b of bodies) call.write(b);
      call.end();
    });
  }

  bidi(path: string, bodies: Buffer[]): Promise<RawOutcome> {
    return new Promise((resolve) => {
      const responses: Buffer[] = [];
      const call = this.client.makeBidiStreamRequest(path, pass, pass, new grpc.Metadata(), this.deadline());
      call.on('data', (b: Buffer) => responses.push(b));
      call.on('error', () => undefined); // 'status' has it
      call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details, responses }));
      for (const b of bodies) call.write(b);
      call.end();
    });
  }

  close(): void {
    this.client.close();
  }
}

/** A gRPC length-prefixed message; `declaredLength` lies about its size, `compressed` sets the flag. */
export function grpcFrame(body: Buffer, opts: { declaredLength?: number; compressed?: boolean } = {}): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = opts.compressed ? 1 : 0;
  prefix.writeUInt32BE(opts.declaredLength ?? body.length, 1);
  return Buffer.concat([prefix, body]);
}

export interface H2Outcome {
  /** grpc-status from the trailers (or headers, for a trailers-only response); undefined if the stream died without one. */
  status: number | undefined;
  message: string;
  /** How the stream ended without a status: an RST_STREAM code or an error. */
  aborted?: string;
}

/** An HTTP/2 session over the daemon's Unix socket (node:http2, so the framing itself is valid). */
export function h2Connect(socketPath: string): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined); // the tests look at stream outcomes
  return session;
}

/** Starts a gRPC request by hand; the caller writes frames and ends (or abandons) it. */
export function h2Request(session: http2.ClientHttp2Session, path: string, extraHeaders: http2.OutgoingHttpHeaders = {}): { stream: http2.ClientHttp2Stream; outcome: Promise<H2Outcome> } {
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extraHeaders });
  const outcome = new Promise<H2Outcome>((resolve) => {
    let status: number | undefined;
    let message = '';
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = decodeURIComponent(String(h['grpc-message'] ?? ''));
      }
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('data', () => undefined);
    stream.on('error', (e: Error) => resolve({ status, message, aborted: e.message }));
    stream.on('close', () => resolve(status === undefined ? { status, message, aborted: `RST_STREAM ${stream.rstCode ?? '?'}` } : { status, message }));
  });
  return { stream, outcome };
}

/** Open file descriptors of a process (as root in the guest). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The forms a leaked byte string would take in a log or a file. */
export function leakForms(bytes: Uint8Array): string[] {
  const b = Buffer.from(bytes);
  return [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), b.toString('base64url'), b.toString('latin1')];
}

/**
 * A raw connection that speaks no gRPC. An accepted connection gets the server's HTTP/2 SETTINGS
 * at once; one refused at accept is closed without a byte.
 */
export interface RawConnection {
  sock: net.Socket;
  first: Promise<'accepted' | 'refused'>;
  closed: Promise<void>;
  bytes(): Buffer;
}
export function rawConnect(path: string, preface = false): RawConnection {
  const sock = net.createConnection(path);
  const chunks: Buffer[] = [];
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  const first = new Promise<'accepted' | 'refused'>((resolve) => {
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      resolve('accepted');
    });
    void closed.then(() => resolve(chunks.length > 0 ? 'accepted' : 'refused'));
  });
  if (preface) {
    // The client connection preface and an empty SETTINGS frame: a well-behaved, idle HTTP/2 client.
    sock.on('connect', () => sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])));
  }
  return { sock, first, closed, bytes: () => Buffer.concat(chunks) };
}

/** HTTP/2 frame types in a byte stream from the server. */
export function frameTypes(b: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at + 9 <= b.length; at += 9 + b.readUIntBE(at, 3)) types.push(b[at + 3]!);
  return types;
}

/**
 * A gRPC call over a raw HTTP/2 stream that reads nothing until told to. A grpc-js client cannot
 * play a slow reader: with no reader it goes on taking messages into its own memory
 * (subchannel-call.ts unpushedReadMessages), so the daemon would never see backpressure.
 */
export interface RawCall {
  session: http2.ClientHttp2Session;
  stream: http2.ClientHttp2Stream;
  /** Writes one gRPC message; false when HTTP/2 flow control holds it back (then 'drain'). */
  send(body: Uint8Array): boolean;
  /** Starts reading; the messages read so far. */
  read(): Buffer[];
  /** grpc-status from the trailers (or a trailers-only answer); undefined if the stream just closed. */
  status: Promise<string | undefined>;
}
/** `method`: a CryptoService method ("Session") or a full path ("/ringfence.v1.StatusService/GetStatus"). */
export function rawCall(socket: string, method: string, headers: Record<string, string> = {}): RawCall {
  const session = http2.connect('http://localhost', { createConnection: () => net.createConnection(socket) });
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': method.startsWith('/') ? method : `/ringfence.v1.CryptoService/${method}`, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  stream.on('error', () => undefined);
  stream.pause();
  const messages: Buffer[] = [];
  let pending = Buffer.alloc(0);
  let reading = false;
  const status = new Promise<string | undefined>((resolve) => {
    stream.on('response', (h) => h['grpc-status'] !== undefined && resolve(String(h['grpc-status'])));
    stream.on('trailers', (t) => resolve(String(t['grpc-status'])));
    stream.on('close', () => resolve(undefined));
  });
  return {
    session,
    stream,
    status,
    send: (body) => {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(body.length, 1);
      return stream.write(Buffer.concat([prefix, body]));
    },
    read: () => {
      if (!reading) {
        reading = true;
        stream.on('data', (b: Buffer) => {
          pending = Buffer.concat([pending, b]);
          while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
            const n = pending.readUInt32BE(1);
            messages.push(pending.subarray(5, 5 + n));
            pending = pending.subarray(5 + n);
          }
        });
        stream.resume();
      }
      return messages;
    },
  };
}

/** Reads raw Session calls to their end: each one's status, and the ids it answered (packed answers included). */
export async function drainSessions(calls: RawCall[]): Promise<{ statuses: (string | undefined)[]; ids: bigint[][] }> {
  const got = calls.map((c) => c.read());
  const statuses = await Promise.all(calls.map((c) => c.status));
  const ids = got.map((messages) =>
    messages.flatMap((b) => {
      const r = fromBinary(SessionResponseSchema, b);
      return [r, ...r.more].map((a) => a.id);
    }),
  );
  return { statuses, ids };
}
