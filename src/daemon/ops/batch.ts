import type { MessageInitShape } from '@bufbuild/protobuf';
import type { BatchComputeMacRequest, BatchComputeMacResponseSchema, BatchDecryptRequest, BatchDecryptResponseSchema, BatchEncryptRequest, BatchEncryptResponseSchema } from '../../gen/ringfence/v1/batch_pb.js';
import { ApiError, ErrorReason, Status, toApiError } from '../api/errors.js';
import { HEADER_BYTES } from '../ciphertext/envelope.js';
import type { OpContext } from './context.js';
import { decrypt } from './decrypt.js';
import { encrypt } from './encrypt.js';
import { computeMac } from './mac.js';

/** Items run concurrently, this many at a time: enough to keep the engine's op sockets busy. */
const CONCURRENCY = 16;

type ItemResult<R> = { case: 'response'; value: R } | { case: 'error'; value: ReturnType<ApiError['toItemStatus']> };

/** Told of each item as it ends (the API layer writes its audit line). */
export type OnItem = (item: unknown, outcome: { response: unknown } | { error: ApiError }, durationMs: number) => void;

/** Runs every item on its own; one failure never fails the batch. Results keep the items' order. */
async function runItems<T, R>(ctx: OpContext, items: readonly T[], what: string, op: (ctx: OpContext, item: T) => Promise<R>, onItem?: OnItem): Promise<{ result: ItemResult<R> }[]> {
  if (items.length > ctx.limits.maxBatchItems) {
    throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, `the batch has ${items.length} items; the limit is ${ctx.limits.maxBatchItems} — split it`, {
      actual_items: String(items.length),
      limit_items: String(ctx.limits.maxBatchItems),
    });
  }
  const results = new Array<{ result: ItemResult<R> }>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      const start = performance.now();
      try {
        const response = await op(ctx, items[i]!);
        results[i] = { result: { case: 'response', value: response } };
        onItem?.(items[i], { response }, performance.now() - start);
      } catch (err) {
        const error = toApiError(err, what);
        results[i] = { result: { case: 'error', value: error.toItemStatus() } };
        onItem?.(items[i], { error }, performance.now() - start);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  return results;
}

/**
 * The most one encrypted item adds to the reply beyond its plaintext: envelope header, the longest
 * tag (32 bytes, aes-256-ctr-hmac-sha256), and protobuf framing of the result, response, ciphertext,
 * key name and version (at most 6 bytes each); the key name is counted apart.
 */
const ENCRYPTED_ITEM_OVERHEAD = HEADER_BYTES + 32 + 5 * 6;

/**
 * Refuses a batch whose encrypted reply could exceed the largest message the daemon sends, before
 * any item runs: otherwise every item would be encrypted, counted and audited as done, and then
 * the client would receive only RESOURCE_EXHAUSTED from gRPC. (Decrypt and MAC replies are never
 * larger than their requests.)
 */
function checkEncryptedReplyFits(ctx: OpContext, req: BatchEncryptRequest): void {
  let bytes = 0;
  for (const item of req.requests) bytes += item.plaintext.byteLength + Buffer.byteLength(item.keyName) + ENCRYPTED_ITEM_OVERHEAD;
  if (bytes > ctx.limits.maxMessageBytes) {
    throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, `the encrypted batch could be ${bytes} bytes, more than the largest reply (${ctx.limits.maxMessageBytes} bytes) — split it; nothing was encrypted`, {
      actual_bytes: String(bytes),
      limit_bytes: String(ctx.limits.maxMessageBytes),
    });
  }
}

export async function batchEncrypt(ctx: OpContext, req: BatchEncryptRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchEncryptResponseSchema>> {
  if (req.requests.length <= ctx.limits.maxBatchItems) checkEncryptedReplyFits(ctx, req);
  return { results: await runItems(ctx, req.requests, 'encrypting', encrypt, onItem) };
}

export async function batchDecrypt(ctx: OpContext, req: BatchDecryptRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchDecryptResponseSchema>> {
  return { results: await runItems(ctx, req.requests, 'decrypting', decrypt, onItem) };
}

export async function batchComputeMac(ctx: OpContext, req: BatchComputeMacRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchComputeMacResponseSchema>> {
  return { results: await runItems(ctx, req.requests, 'computing a MAC', computeMac, onItem) };
}
