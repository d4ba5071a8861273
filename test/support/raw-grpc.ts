/**
 * Clients that send the daemon what a well-behaved SDK never would, for the hostile-input tests:
 * raw bytes as gRPC message bodies (grpc-js with pass-through serializers, so the server decodes
 * them), and hand-made gRPC-over-HTTP/2 requests whose 5-byte length prefix can lie (node:http2).
 */
import * as grpc from '@grpc/grpc-js';
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
