/**
 * Packing on the SDK's side of a Session (session.proto, "Packing"): which queued operations share
 * one SessionRequest. The first goes at the top level, the others in its `more`.
 */

/** Most operations in one message (the daemon allows Limits.max_batch_items, 1000 by default). */
export const PACK_OPS = 64;
/** Most payload bytes in one message: far below the daemon's max_message_bytes (4 MiB + 64 KiB). */
export const PACK_BYTES = 256 * 1024;

/** What went over the wire, for diagnostics: messages and the operations they carried. */
export interface SessionCounts {
  messagesSent: number;
  operationsSent: number;
  messagesReceived: number;
  answersReceived: number;
}

/** The bytes fields of an operation (plaintext, data, ciphertext, associated data, MAC). */
export function payloadOf(value: object): number {
  let n = 0;
  for (const v of Object.values(value)) if (v instanceof Uint8Array) n += v.byteLength;
  return n;
}

export interface Queued {
  bytes: number;
  settled: boolean;
}

/**
 * Takes from the head of `queue` the operations for one message: at most `room` (what maxInFlight
 * leaves), PACK_OPS and PACK_BYTES of payload, but always one, however large, if any is left.
 * Operations settled while queued (aborted, expired) are dropped: they are never sent.
 */
export function takeBatch<T extends Queued>(queue: T[], room: number, maxOps = PACK_OPS, maxBytes = PACK_BYTES): T[] {
  const batch: T[] = [];
  let bytes = 0;
  while (queue.length > 0 && batch.length < Math.min(maxOps, room)) {
    const op = queue[0]!;
    if (op.settled) {
      queue.shift();
      continue;
    }
    if (batch.length > 0 && bytes + op.bytes > maxBytes) break;
    queue.shift();
    batch.push(op);
    bytes += op.bytes;
  }
  return batch;
}
