/**
 * encryptStream(): write plaintext of any size, read the stream ciphertext (EncryptStream's
 * response bytes concatenated). The output is complete only when the readable side ends: if the
 * Duplex errors instead, what was read is not a valid stream ciphertext.
 */
import { create } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import {
  EncryptStreamRequestSchema,
  type EncryptStreamRequest,
  type EncryptStreamResponse,
} from '../../gen/ringfence/v1/stream_pb.js';
import type { CallOptions } from './call-options.js';
import { toBytes, type Data } from './requests.js';
import { checkChunkBytes, RpcDuplex, type StreamPayload } from './rpc-duplex.js';
import type { StreamCall } from './transport.js';

export interface EncryptStreamOptions extends CallOptions {
  /** Authenticated with every chunk; decryptStream needs the same bytes. */
  associatedData?: Data;
  /** Plaintext bytes per sealed chunk: default 256 KiB, at most 1 MiB (the daemon's default limit). */
  chunkBytes?: number;
}

export class EncryptStream extends RpcDuplex<EncryptStreamRequest, EncryptStreamResponse> {
  protected readonly holdBackLast = true;

  constructor(rpc: StreamCall<grpc.ClientDuplexStream<EncryptStreamRequest, EncryptStreamResponse>>, keyName: string, opts: EncryptStreamOptions) {
    const header = create(EncryptStreamRequestSchema, {
      frame: { case: 'header', value: { keyName, associatedData: opts.associatedData === undefined ? undefined : toBytes(opts.associatedData) } },
    });
    super(rpc, checkChunkBytes(opts.chunkBytes), header);
  }

  protected chunk(plaintext: Buffer, final: boolean): EncryptStreamRequest {
    return create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext, final } } });
  }

  protected payload(res: EncryptStreamResponse): StreamPayload {
    return { bytes: res.ciphertext, keyName: res.keyName, keyVersion: res.keyVersion, final: res.final };
  }
}
