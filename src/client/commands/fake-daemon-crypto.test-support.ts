/**
 * The CLI tests' fake daemon, cryptography part (tests only): node:crypto AES-256-GCM and HMAC in the
 * daemon's documented ciphertext layouts (proto/ringfence/v1/crypto.proto, stream.proto), so the
 * CLI's detection of text/binary and unary/stream ciphertexts is exercised on realistic bytes.
 *   unary:  "RF" | 1 | suite | key id (16) | version u32 | nonce (12) | sealed      (AAD = header || aad)
 *   stream: "RF" | 2 | suite | key id (16) | version u32 | stream id (16), then chunks of
 *           flags u8 | sealed length u32 | nonce (12) | sealed  (AAD = header || index u64 || flags || aad)
 */
import * as grpc from '@grpc/grpc-js';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from '../../rpc/error-details.js';

export class FakeError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly reason: ErrorReason,
    message: string,
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The status, with the ErrorInfo trailer, that a handler fails with. */
export function toStatus(err: unknown): Partial<grpc.StatusObject> & Error {
  if (err instanceof FakeError) {
    const metadata = new grpc.Metadata();
    metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(err.code, err.message, { reason: err.reason, metadata: err.metadata }));
    return Object.assign(new Error(err.message), { code: err.code, details: err.message, metadata });
  }
  const message = err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(message), { code: grpc.status.INTERNAL, details: message });
}

export const invalid = (reason: ErrorReason, message: string, metadata: Record<string, string> = {}) => new FakeError(grpc.status.INVALID_ARGUMENT, reason, message, metadata);

export const UNARY_HEADER_BYTES = 36;
export const STREAM_HEADER_BYTES = 40;
export const CHUNK_PREFIX_BYTES = 17;

export function seal(key: Buffer, nonce: Buffer, plaintext: Uint8Array, aad: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key.subarray(0, 32), nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

export function open(key: Buffer, nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  if (sealed.length < 16) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: shorter than its tag', { detail: 'short' });
  const d = createDecipheriv('aes-256-gcm', key.subarray(0, 32), nonce);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    throw invalid(ErrorReason.AUTHENTICATION_FAILED, 'authentication failed: the associated data differs from the one given at encryption (leaving it out counts as different), or the ciphertext was altered');
  }
}

export interface Sealer {
  keyId: Buffer;
  suiteId: number;
  version: number;
  material: Buffer;
}

export function header(format: 1 | 2, s: Sealer, tail: Buffer): Buffer {
  const h = Buffer.alloc(24);
  h.write('RF', 0, 'latin1');
  h[2] = format;
  h[3] = s.suiteId;
  s.keyId.copy(h, 4);
  h.writeUInt32BE(s.version, 20);
  return Buffer.concat([h, tail]);
}

export function encryptUnary(s: Sealer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const h = header(1, s, nonce);
  return Buffer.concat([h, seal(s.material, nonce, plaintext, Buffer.concat([h, aad]))]);
}

export interface ParsedHeader {
  format: number;
  keyId: string;
  version: number;
}

/** The fields every ciphertext starts with; refuses what is not ours. */
export function parseHeader(c: Buffer): ParsedHeader {
  if (c.length < 24 || c[0] !== 0x52 || c[1] !== 0x46) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: not a ringfence ciphertext', { detail: 'magic' });
  // As the daemon answers (ops/envelope-ops.ts, ciphertext/stream-format.ts).
  if (c[2] === 0) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: there is no ciphertext format 0', { detail: 'format' });
  if (c[2] !== 1 && c[2] !== 2) throw invalid(ErrorReason.CIPHERTEXT_FORMAT_UNSUPPORTED, `unsupported ciphertext format ${c[2]}`, { format_version: String(c[2]) });
  return { format: c[2]!, keyId: c.subarray(4, 20).toString('hex'), version: c.readUInt32BE(20) };
}

export function decryptUnary(material: Buffer, c: Buffer, aad: Uint8Array): Buffer {
  if (c.length < UNARY_HEADER_BYTES + 16) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: too short', { detail: 'short' });
  const h = c.subarray(0, UNARY_HEADER_BYTES);
  return open(material, h.subarray(24), c.subarray(UNARY_HEADER_BYTES), Buffer.concat([h, aad]));
}

export function chunkAad(streamHeader: Buffer, index: number, flags: number, aad: Uint8Array): Buffer {
  const pos = Buffer.alloc(9);
  pos.writeBigUInt64BE(BigInt(index));
  pos[8] = flags;
  return Buffer.concat([streamHeader, pos, aad]);
}

export function sealChunk(s: Sealer, streamHeader: Buffer, index: number, final: boolean, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const flags = final ? 1 : 0;
  const nonce = randomBytes(12);
  const sealed = seal(s.material, nonce, plaintext, chunkAad(streamHeader, index, flags, aad));
  const prefix = Buffer.alloc(5);
  prefix[0] = flags;
  prefix.writeUInt32BE(sealed.length, 1);
  return Buffer.concat([prefix, nonce, sealed]);
}
