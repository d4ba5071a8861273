/** hashStream(): a digest of data of any size, sent as HashStream's client stream. */
import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { HashStreamRequestSchema, type HashStreamRequest, type HashStreamResponse } from '../../gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import type { CallOptions } from './call-options.js';
import type { RingfenceError } from './errors.js';
import { parseHashAlgorithm } from './names.js';
import type { HashAlgorithmInput } from './requests.js';
import { CallWriter } from './stream-io.js';
import type { Transport } from './transport.js';

/** The daemon's default Limits.max_stream_chunk_bytes. */
const MAX_PIECE_BYTES = 1024 * 1024;

export type HashSource = AsyncIterable<Uint8Array | string> | NodeJS.ReadableStream;

export async function hashStream(
  transport: Transport,
  source: HashSource,
  algorithm: HashAlgorithmInput = HashAlgorithm.SHA256,
  opts: CallOptions = {},
): Promise<HashStreamResponse> {
  const alg = parseHashAlgorithm(algorithm);
  let failure: RingfenceError | undefined;
  let writer: CallWriter<HashStreamRequest> | undefined;
  let call!: grpc.ClientWritableStream<HashStreamRequest>;
  const result = new Promise<HashStreamResponse>((resolve, reject) => {
    call = transport.clientStream(CryptoService.method.hashStream, opts, (err, response) => {
      if (err || !response) {
        failure = err;
        writer?.stop(); // stop reading the source at once
        reject(err);
      } else resolve(response);
    }).call;
  });
  result.catch(() => {}); // awaited below; avoid an unhandled rejection while we still read
  writer = new CallWriter(call);
  let first = true;
  const send = (data: Uint8Array) => {
    // The algorithm goes in the first message; later ones leave it unspecified.
    const message = create(HashStreamRequestSchema, { algorithm: first ? alg : HashAlgorithm.UNSPECIFIED, data });
    first = false;
    return writer!.write(message);
  };
  try {
    for await (const piece of source as AsyncIterable<Uint8Array | string>) {
      if (failure) break;
      const bytes = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
      for (let at = 0; at < bytes.length && !failure; at += MAX_PIECE_BYTES) await send(bytes.subarray(at, at + MAX_PIECE_BYTES));
    }
  } catch (err) {
    // The source failed: the digest would be of a prefix, so cancel rather than half-close.
    call.cancel();
    throw err;
  }
  if (!failure) {
    if (first) await send(new Uint8Array(0));
    call.end();
  }
  return result;
}
