import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { encodedSize } from '../../rpc/binary-encode.js';
import { BatchComputeMacResponseSchema, BatchDecryptResponseSchema, BatchEncryptResponseSchema, type BatchComputeMacRequest, type BatchDecryptRequest, type BatchEncryptRequest } from '../../gen/ringfence/v1/batch_pb.js';
import { ApiError, ErrorReason, Status, toApiError } from '../api/errors.js';
import { HEADER_BYTES } from '../ciphertext/envelope.js';
import { isValidKeyName } from '../keys/model.js';
import type { OpContext } from './context.js';
import { decrypt } from './decrypt.js';
import { encrypt } from './encrypt.js';
import { computeMac } from './mac.js';

/** Items run concurrently, this many at a time: enough to keep the engine's op sockets busy. */
const CONCURRENCY = 16;

type ItemResult<R> = { case: 'response'; value: R } | { case: 'error'; value: ReturnType<ApiError['toItemStatus']> };

/** Told of each item as it ends (the API layer writes its audit line). */
export type OnItem = (item: unknown, outcome: { response: unknown } | { error: ApiError }, durationMs: number) => void;

function checkCount(ctx: OpContext, items: number): void {
  if (items > ctx.limits.maxBatchItems) {
    throw new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, `the batch has ${items} items; the limit is ${ctx.limits.maxBatchItems} — split it`, {
      actual_items: String(items),
      limit_items: String(ctx.limits.maxBatchItems),
    });
  }
}

/** Runs every item on its own; one failure never fails the batch. Results keep the items' order. */
async function runItems<T, R>(ctx: OpContext, items: readonly T[], what: string, op: (ctx: OpContext, item: T) => Promise<R>, onItem?: OnItem): Promise<{ result: ItemResult<R> }[]> {
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

/** Protobuf framing of one result: result, response or error, and each field's tag and length. */
const FRAMING_BYTES = 5 * 6;
/** The longest name an existing key has (keys/model.ts: ASCII, at most 64). */
const KEY_NAME_BYTES = 64;
/** The longest tag (aes-256-ctr-hmac-sha256) and MAC (hmac-sha512). */
const TAG_BYTES = 32;
const MAC_BYTES = 64;
/** One failed item's ItemStatus: code, reason, a message and metadata that quote the key name. */
const ITEM_ERROR_BYTES = 1024;

/** The least framing of a successful result: result, response and its data field, each a tag and a length. */
const LEAST_FRAMING_BYTES = 6;
/** The shortest tag and MAC (GCM, CCM, ChaCha20-Poly1305; hmac-sha256). */
const LEAST_TAG_BYTES = 16;
const LEAST_MAC_BYTES = 32;

/**
 * Per item: the least its answer can be if it succeeds (0 for an item that cannot: too large, not a
 * key name, too short a ciphertext), the most it can be if it succeeds, and the bytes of the name
 * its error may quote.
 */
interface ItemBounds<T> {
  least: (item: T) => number;
  most: (item: T) => number;
  nameBytes: (item: T) => number;
}

/**
 * Bounds of a batch's reply: the least it will be (every item that can succeed does; found by
 * review: counting the most refused batches whose replies fit, and an item that cannot succeed as
 * if it would refused the items beside it), and the most it can be, errors included.
 */
function replyBounds<T>(items: readonly T[], b: ItemBounds<T>): { least: number; worst: number } {
  let least = 0;
  let worst = 0;
  for (const item of items) {
    least += b.least(item);
    worst += Math.max(b.most(item) + FRAMING_BYTES, ITEM_ERROR_BYTES + 3 * b.nameBytes(item));
  }
  return { least, worst };
}

function tooLarge(bytes: number, limit: number, message: string): ApiError {
  return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, message, { actual_bytes: String(bytes), limit_bytes: String(limit) });
}

/**
 * Runs a batch whose reply must fit maxMessageBytes. A batch whose answers would not fit even if
 * every item succeeds is refused before any item runs: otherwise every item would be done, counted
 * and audited, and the client would get only grpc-js's RESOURCE_EXHAUSTED. Error answers can be
 * larger than successes (a message and metadata quoting the key name): when they could overflow
 * the reply, its real size is measured, and a reply too large is answered BATCH_TOO_LARGE.
 */
async function runBatch<T, R, S extends DescMessage>(
  ctx: OpContext,
  schema: S,
  items: readonly T[],
  what: string,
  op: (ctx: OpContext, item: T) => Promise<R>,
  bounds: ItemBounds<T>,
  onItem?: OnItem,
): Promise<{ results: { result: ItemResult<R> }[] }> {
  checkCount(ctx, items.length);
  const limit = ctx.limits.maxMessageBytes;
  const bound = replyBounds(items, bounds);
  if (bound.least > limit) {
    throw tooLarge(bound.least, limit, `the batch's answers would be at least ${bound.least} bytes, more than the largest reply (${limit} bytes) — split it; no item was run`);
  }
  const results = await runItems(ctx, items, what, op, onItem);
  if (bound.worst > limit) {
    const size = encodedSize(schema, create(schema, { results } as unknown as MessageInitShape<S>));
    if (size > limit) throw tooLarge(size, limit, `the batch's answers, with their errors, are ${size} bytes, more than the largest reply (${limit} bytes) — split it; its items ran`);
  }
  return { results };
}

export async function batchEncrypt(ctx: OpContext, req: BatchEncryptRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchEncryptResponseSchema>> {
  const fits = (item: BatchEncryptRequest['requests'][number]) =>
    item.plaintext.byteLength <= ctx.limits.maxPayloadBytes && item.associatedData.byteLength <= ctx.limits.maxAssociatedDataBytes && isValidKeyName(item.keyName);
  return runBatch(ctx, BatchEncryptResponseSchema, req.requests, 'encrypting', encrypt, {
    // Ciphertext: plaintext + header + tag; the key's name; its version.
    least: (item) => (fits(item) ? item.plaintext.byteLength + HEADER_BYTES + LEAST_TAG_BYTES + item.keyName.length + LEAST_FRAMING_BYTES : 0),
    most: (item) => item.plaintext.byteLength + HEADER_BYTES + TAG_BYTES + Buffer.byteLength(item.keyName),
    nameBytes: (item) => Buffer.byteLength(item.keyName),
  }, onItem);
}

export async function batchDecrypt(ctx: OpContext, req: BatchDecryptRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchDecryptResponseSchema>> {
  const fits = (item: BatchDecryptRequest['requests'][number]) => item.ciphertext.byteLength >= HEADER_BYTES + LEAST_TAG_BYTES && item.ciphertext.byteLength <= ctx.limits.maxPayloadBytes + 1024;
  return runBatch(ctx, BatchDecryptResponseSchema, req.requests, 'decrypting', decrypt, {
    // Plaintext (the ciphertext less its header and tag) and the name of the key the ciphertext names.
    least: (item) => (fits(item) ? Math.max(0, item.ciphertext.byteLength - HEADER_BYTES - TAG_BYTES) + 1 + LEAST_FRAMING_BYTES : 0),
    most: (item) => item.ciphertext.byteLength + KEY_NAME_BYTES,
    nameBytes: () => KEY_NAME_BYTES,
  }, onItem);
}

export async function batchComputeMac(ctx: OpContext, req: BatchComputeMacRequest, onItem?: OnItem): Promise<MessageInitShape<typeof BatchComputeMacResponseSchema>> {
  const fits = (item: BatchComputeMacRequest['requests'][number]) => item.data.byteLength <= ctx.limits.maxPayloadBytes && isValidKeyName(item.keyName);
  return runBatch(ctx, BatchComputeMacResponseSchema, req.requests, 'computing a MAC', computeMac, {
    least: (item) => (fits(item) ? LEAST_MAC_BYTES + item.keyName.length + LEAST_FRAMING_BYTES : 0),
    most: (item) => MAC_BYTES + Buffer.byteLength(item.keyName),
    nameBytes: (item) => Buffer.byteLength(item.keyName),
  }, onItem);
}
