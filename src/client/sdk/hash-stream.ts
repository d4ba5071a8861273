/** hashStream(): a digest of data of any size, sent as HashStream's client stream. */
import { create } from '@bufbuild/protobuf';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { HashStreamRequestSchema, type HashStreamRequest, type HashStreamResponse } from '../../gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import type { CallOptions } from './call-options.js';
import type { RingfenceError } from './errors.js';
import { parseHashAlgorithm } from './names.js';
import type { HashAlgorithmInput } from './requests.js';
import { MAX_CHUNK_BYTES } from './rpc-duplex.js';
import { CallWriter } from './stream-io.js';
import type { Transport } from './transport.js';

export interface HashStreamOptions extends CallOptions {
  /** Bytes per message: default and most 1 MiB (the daemon's default max_stream_chunk_bytes); lower it
   * for a daemon configured with a smaller limit (GetStatus reports it). */
  pieceBytes?: number;
}

export type HashSource = AsyncIterable<Uint8Array | string> | NodeJS.ReadableStream;

export async function hashStream(
  transport: Transport,
  source: HashSource,
  algorithm: HashAlgorithmInput = HashAlgorithm.SHA256,
  opts: HashStreamOptions = {},
): Promise<HashStreamResponse> {
  const alg = parseHashAlgorithm(algorithm);
  const pieceBytes = checkPieceBytes(opts.pieceBytes);
  // Before the RPC starts: a source that cannot be iterated (a Buffer, an array, null) threw here
  // after the call was made, leaving it open on the daemon with its signal listener (review by helper-166).
  const iterate = (source as Partial<AsyncIterable<Uint8Array | string>> | null | undefined)?.[Symbol.asyncIterator];
  if (typeof iterate !== 'function') {
    throw new TypeError(`hashStream: the source must be a Readable or an async iterable of strings or Uint8Arrays, got ${Object.prototype.toString.call(source)}`);
  }
  // An aborted signal refuses the call before it is made (Transport.clientStream); the source is
  // let go as an abort during the call lets it go.
  if (opts.signal?.aborted) (source as { destroy?: () => void }).destroy?.();
  let failure: RingfenceError | undefined;
  let writer: CallWriter<HashStreamRequest> | undefined;
  let settle!: { resolve(r: HashStreamResponse): void; reject(e: RingfenceError): void };
  const result = new Promise<HashStreamResponse>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => {}); // awaited below; avoid an unhandled rejection while we still read
  // Made outside the promise, so that a refusal (a closed client) is thrown as it is.
  const call = transport.clientStream(CryptoService.method.hashStream, opts, (err, response) => {
    if (err || !response) {
      failure = err;
      writer?.stop(); // stop reading the source at once
      settle.reject(err!);
    } else settle.resolve(response);
  }).call;
  // Rejects when the call fails (abort, deadline, daemon error) before the source ends: a source
  // that waits for data it may never get must not hold the caller past the call's end.
  const callFailed = new Promise<never>((_, reject) => void result.catch(reject));
  callFailed.catch(() => {});
  writer = new CallWriter(call);
  let first = true;
  const send = (data: Uint8Array) => {
    // The algorithm goes in the first message; later ones leave it unspecified.
    const message = create(HashStreamRequestSchema, { algorithm: first ? alg : HashAlgorithm.UNSPECIFIED, data });
    first = false;
    return writer!.write(message);
  };
  // Cancelled, and half-closed too: grpc-js 1.14 keeps the connection's handle of a client stream
  // cancelled before it started and never half-closed, holding the process alive after close()
  // (a signal aborted in the turn the call was made; review by helper-213).
  const endFailed = (cancel: boolean) => {
    if (cancel) call.cancel();
    call.end();
  };
  let pieces: AsyncIterator<Uint8Array | string>;
  try {
    pieces = iterate.call(source);
  } catch (err) {
    endFailed(true); // the source's own iterator failed: the RPC must not stay open
    throw err;
  }
  // A Node stream is destroyed, as pipeline would (its iterator's return() waits for data that may
  // never come); an async iterator is asked to return, not awaited: a generator suspended in its
  // own await finishes return() only when it resumes.
  const stopSource = () => {
    const readable = source as { destroy?: () => void };
    if (typeof readable.destroy === 'function') readable.destroy();
    else void pieces.return?.()?.catch(() => {});
  };
  try {
    for (;;) {
      const next = await Promise.race([pieces.next(), callFailed]);
      if (next.done || failure) break;
      const piece: unknown = next.value;
      // An ArrayBuffer or a DataView has no length: it was hashed as nothing (review by helper-125).
      if (typeof piece !== 'string' && !(piece instanceof Uint8Array)) {
        throw new TypeError(`hashStream: the source gave ${Object.prototype.toString.call(piece)}; it must give strings or Uint8Arrays (Buffers)`);
      }
      const bytes = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
      for (let at = 0; at < bytes.length && !failure; at += pieceBytes) await send(bytes.subarray(at, at + pieceBytes));
    }
  } catch (err) {
    stopSource();
    // The source failed: the digest would be of a prefix, so cancel before the half-close.
    endFailed(err !== failure);
    throw err;
  }
  if (failure) {
    stopSource();
    endFailed(false);
  } else {
    if (first) await send(new Uint8Array(0));
    call.end();
  }
  return result;
}

function checkPieceBytes(pieceBytes: number | undefined): number {
  if (pieceBytes === undefined) return MAX_CHUNK_BYTES;
  if (!Number.isInteger(pieceBytes) || pieceBytes < 1 || pieceBytes > MAX_CHUNK_BYTES) throw new RangeError(`pieceBytes must be an integer from 1 to ${MAX_CHUNK_BYTES}, got ${pieceBytes}`);
  return pieceBytes;
}
