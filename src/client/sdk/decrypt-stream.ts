/**
 * decryptStream(): write a stream ciphertext (sliced anywhere), read the plaintext. Each piece read
 * comes from a chunk that authenticated, but the stream is whole only when the readable side ends:
 * if the Duplex errors (truncation, tampering, wrong associated data), DISCARD everything read.
 */
import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import {
  DecryptStreamRequestSchema,
  type DecryptStreamRequest,
  type DecryptStreamResponse,
} from '../../gen/ringfence/v1/stream_pb.js';
import type { CallOptions } from './call-options.js';
import { toBytes, type Data } from './requests.js';
import { checkChunkBytes, RpcDuplex, type StreamPayload } from './rpc-duplex.js';
import type { StreamCall } from './transport.js';

export interface DecryptStreamOptions extends CallOptions {
  /** The associated data the stream was encrypted with. */
  associatedData?: Data;
  /** Ciphertext bytes per message sent (they need not match the stream's chunks): default 256 KiB,
   * at most 1 MiB. The daemon takes messages of at most its maxStreamChunkBytes + 64 KiB
   * (GetStatus reports the limit). Ciphertext is sent once this much is written, or at end(): for
   * a source that stays open (a socket), set it no larger than the stream's chunks, or plaintext
   * waits for the next chunkBytes of ciphertext. */
  chunkBytes?: number;
}

export class DecryptStream extends RpcDuplex<DecryptStreamRequest, DecryptStreamResponse> {
  protected readonly holdBackLast = false;

  constructor(rpc: StreamCall<grpc.ClientDuplexStream<DecryptStreamRequest, DecryptStreamResponse>>, opts: DecryptStreamOptions) {
    const header = create(DecryptStreamRequestSchema, {
      frame: { case: 'header', value: { associatedData: opts.associatedData === undefined ? undefined : toBytes(opts.associatedData) } },
    });
    super(rpc, checkChunkBytes(opts.chunkBytes), header);
  }

  protected chunk(ciphertext: Buffer): DecryptStreamRequest {
    return create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext } } });
  }

  protected payload(res: DecryptStreamResponse): StreamPayload {
    return { bytes: res.plaintext, keyName: res.keyName, keyVersion: res.keyVersion, final: res.final };
  }
}
