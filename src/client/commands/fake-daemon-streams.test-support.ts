/**
 * The CLI tests' fake daemon, streaming part (tests only): EncryptStream and DecryptStream in the
 * stream ciphertext layout (see fake-daemon-crypto), failing as the daemon documents (tampering:
 * AUTHENTICATION_FAILED after earlier chunks' plaintext was sent; truncation: STREAM_TRUNCATED), and
 * HashStream.
 */
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { HashStreamResponseSchema, type HashStreamRequest } from '../../gen/ringfence/v1/crypto_pb.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { KeyPurpose } from '../../gen/ringfence/v1/key_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import {
  DecryptStreamResponseSchema,
  EncryptStreamResponseSchema,
  type DecryptStreamRequest,
  type DecryptStreamResponse,
  type EncryptStreamRequest,
  type EncryptStreamResponse,
} from '../../gen/ringfence/v1/stream_pb.js';
import { CHUNK_PREFIX_BYTES, chunkAad, FakeError, header, invalid, open, parseHeader, sealChunk, STREAM_HEADER_BYTES, toStatus, type Sealer } from './fake-daemon-crypto.test-support.js';
import type { FakeKeys, Recorder } from './fake-daemon-keys.test-support.js';

const violation = (detail: string) => invalid(ErrorReason.STREAM_PROTOCOL_VIOLATION, `stream protocol violation: ${detail}`, { detail });
const count = (rec: Recorder, name: string) => (rec.calls[name] = (rec.calls[name] ?? 0) + 1);

/** node:crypto names; BLAKE2b-256 is refused as a restricted kernel would. */
export const NODE_HASHES: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.UNSPECIFIED]: 'sha256',
  [HashAlgorithm.SHA256]: 'sha256',
  [HashAlgorithm.SHA384]: 'sha384',
  [HashAlgorithm.SHA512]: 'sha512',
  [HashAlgorithm.SHA3_256]: 'sha3-256',
  [HashAlgorithm.SHA3_512]: 'sha3-512',
  [HashAlgorithm.BLAKE2B_512]: 'blake2b512',
};

export function hasher(algorithm: HashAlgorithm) {
  const name = NODE_HASHES[algorithm];
  if (!name) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.SUITE_RESTRICTED_BY_KERNEL, 'the kernel refuses blake2b-256 to the daemon under af_alg_restrict=1', { suite: 'blake2b-256' });
  return { algorithm: algorithm || HashAlgorithm.SHA256, hash: createHash(name) };
}

/** A stream message over the daemon's max_stream_chunk_bytes (ciphertext messages may carry 64 KiB more). */
function tooLarge(field: string, n: number, limit: number): FakeError {
  return new FakeError(grpc.status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, `${field} of ${n} bytes exceeds the limit of ${limit}`, { field, limit_bytes: String(limit), actual_bytes: String(n) });
}

function encryptStream(keys: FakeKeys, rec: Recorder, maxChunk: number) {
  return (call: grpc.ServerDuplexStream<EncryptStreamRequest, EncryptStreamResponse>) => {
    count(rec, 'EncryptStream');
    let sealer: Sealer | undefined;
    let streamHeader: Buffer | undefined;
    let aad: Uint8Array = new Uint8Array(0);
    let index = 0;
    let done = false;
    const fail = (err: unknown) => {
      if (done) return;
      done = true;
      call.emit('error', toStatus(err));
    };
    const chunk = (plaintext: Uint8Array, final: boolean) => {
      if (final) done = true;
      call.write(create(EncryptStreamResponseSchema, { ciphertext: sealChunk(sealer!, streamHeader!, index++, final, plaintext, aad), final }));
      if (final) call.end();
    };
    call.on('data', (r: EncryptStreamRequest) => {
      if (done) return;
      try {
        if (!sealer) {
          if (r.frame.case !== 'header') throw violation('the first message must be a header');
          const fk = keys.usable(r.frame.value.keyName, KeyPurpose.AEAD);
          sealer = keys.sealer(fk);
          aad = r.frame.value.associatedData;
          streamHeader = header(2, sealer, randomBytes(16));
          call.write(create(EncryptStreamResponseSchema, { ciphertext: streamHeader, keyName: fk.key.name, keyVersion: sealer.version }));
          return;
        }
        if (r.frame.case !== 'chunk') throw violation('a second header');
        if (r.frame.value.plaintext.length > maxChunk) throw tooLarge('plaintext', r.frame.value.plaintext.length, maxChunk);
        if (r.frame.value.plaintext.length === 0 && !r.frame.value.final) return;
        chunk(r.frame.value.plaintext, r.frame.value.final);
      } catch (err) {
        fail(err);
      }
    });
    call.on('end', () => {
      if (done) return;
      if (!sealer) return fail(violation('no header'));
      chunk(new Uint8Array(0), true);
    });
  };
}

function decryptStream(keys: FakeKeys, rec: Recorder, maxChunk: number) {
  return (call: grpc.ServerDuplexStream<DecryptStreamRequest, DecryptStreamResponse>) => {
    count(rec, 'DecryptStream');
    let aad: Uint8Array | undefined;
    let pending = Buffer.alloc(0);
    let streamHeader: Buffer | undefined;
    let material: Buffer | undefined;
    let first = { keyName: '', keyVersion: 0 };
    let index = 0;
    let finalSeen = false;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      call.emit('error', toStatus(err));
    };
    const parse = () => {
      if (!streamHeader) {
        if (pending.length < STREAM_HEADER_BYTES) return;
        const h = parseHeader(pending);
        if (h.format !== 2) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: a unary ciphertext given to DecryptStream', { detail: 'format' });
        const fk = keys.check(keys.byId(h.keyId), KeyPurpose.AEAD);
        material = fk.material[h.version - 1];
        if (!material) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND, 'no such key version');
        first = { keyName: fk.key.name, keyVersion: h.version };
        streamHeader = pending.subarray(0, STREAM_HEADER_BYTES);
        pending = pending.subarray(STREAM_HEADER_BYTES);
      }
      while (pending.length >= CHUNK_PREFIX_BYTES) {
        if (finalSeen) throw violation('data after the final chunk');
        const end = CHUNK_PREFIX_BYTES + pending.readUInt32BE(1);
        if (pending.length < end) return;
        const flags = pending[0]!;
        const plaintext = open(material!, pending.subarray(5, 17), pending.subarray(17, end), chunkAad(streamHeader, index, flags, aad!));
        call.write(create(DecryptStreamResponseSchema, { plaintext, final: flags === 1, ...(index === 0 ? first : {}) }));
        index++;
        finalSeen = flags === 1;
        pending = pending.subarray(end);
      }
      if (finalSeen && pending.length > 0) throw violation('data after the final chunk');
    };
    call.on('data', (r: DecryptStreamRequest) => {
      if (failed) return;
      try {
        if (aad === undefined) {
          if (r.frame.case !== 'header') throw violation('the first message must be a header');
          aad = r.frame.value.associatedData;
          return;
        }
        if (r.frame.case !== 'chunk') throw violation('a second header');
        if (r.frame.value.ciphertext.length > maxChunk + 64 * 1024) throw tooLarge('ciphertext', r.frame.value.ciphertext.length, maxChunk + 64 * 1024);
        pending = pending.length ? Buffer.concat([pending, r.frame.value.ciphertext]) : Buffer.from(r.frame.value.ciphertext);
        parse();
      } catch (err) {
        fail(err);
      }
    });
    call.on('end', () => {
      if (failed) return;
      if (!finalSeen) return fail(invalid(ErrorReason.STREAM_TRUNCATED, 'truncated stream ciphertext: it ended before its final chunk', { chunks_received: String(index) }));
      call.end();
    });
  };
}

function hashStream(rec: Recorder, maxChunk: number): grpc.handleClientStreamingCall<HashStreamRequest, unknown> {
  return (call, callback) => {
    count(rec, 'HashStream');
    let state: ReturnType<typeof hasher> | undefined;
    let bytes = 0n;
    let failed = false;
    call.on('data', (r: HashStreamRequest) => {
      if (failed) return;
      try {
        if (r.data.length > maxChunk) throw tooLarge('data', r.data.length, maxChunk);
        state ??= hasher(r.algorithm);
        state.hash.update(r.data);
        bytes += BigInt(r.data.length);
      } catch (err) {
        failed = true;
        callback(toStatus(err));
      }
    });
    call.on('end', () => {
      if (failed) return;
      if (!state) return callback(toStatus(violation('no message')));
      callback(null, create(HashStreamResponseSchema, { digest: state.hash.digest(), algorithm: state.algorithm, dataBytes: bytes }));
    });
  };
}

export function streamHandlers(keys: FakeKeys, rec: Recorder, maxChunk: number): grpc.UntypedServiceImplementation {
  return { encryptStream: encryptStream(keys, rec, maxChunk), decryptStream: decryptStream(keys, rec, maxChunk), hashStream: hashStream(rec, maxChunk) };
}
