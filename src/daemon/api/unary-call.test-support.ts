/**
 * Unary Encrypt calls from raw HTTP/2 clients that never read the answers, which HTTP/2 flow
 * control then keeps in the daemon (unary-budget.test.ts, unary-drain.test.ts).
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { EncryptRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';

export const ENCRYPT = '/ringfence.v1.CryptoService/Encrypt';

export const encryptRequest = (bytes: number): Buffer => Buffer.from(toBinary(EncryptRequestSchema, create(EncryptRequestSchema, { keyName: 'k', plaintext: new Uint8Array(bytes) })));
export const framed = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0, body.length >>> 24, (body.length >>> 16) & 255, (body.length >>> 8) & 255, body.length & 255]), body]);

export interface Raw {
  req: http2.ClientHttp2Stream;
  session: http2.ClientHttp2Session;
  /** The daemon began its answer (its response headers came). */
  answered: () => boolean;
}

/** A whole Encrypt call of `bytes` of plaintext, on a connection of its own to `socket`, whose answer is never read. */
export function unreadEncrypt(socket: string, bytes: number, extra: http2.OutgoingHttpHeaders = {}): Raw {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
  session.on('error', () => {});
  const req = session.request({ ':method': 'POST', ':path': ENCRYPT, 'content-type': 'application/grpc', te: 'trailers', ...extra });
  req.on('error', () => {});
  let answered = false;
  req.once('response', () => (answered = true));
  req.end(framed(encryptRequest(bytes)));
  return { req, session, answered: () => answered };
}
