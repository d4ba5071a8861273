/**
 * Packing on the SDK's side of a Session (session.proto, "Packing"): which queued operations share
 * one SessionRequest. The first goes at the top level, the others in its `more`.
 */

/** Most operations in one message (the daemon allows Limits.max_batch_items: 1000 by default, never below 64). */
export const PACK_OPS = 64;
/**
 * Most bytes in one packed message, as packedBytes() bounds them (never below the wire size). The
 * daemon's max_message_bytes is always at least 64 KiB more than its largest single operation
 * (config.ts minMessageBytes), so a message of up to 60 KiB fits whatever the daemon's limits, and
 * an operation too large to share goes alone, as every operation did before packing.
 */
export const PACK_BYTES = 60 * 1024;

/** What went over the wire, for diagnostics: messages and the operations they carried. */
export interface SessionCounts {
  messagesSent: number;
  operationsSent: number;
  messagesReceived: number;
  answersReceived: number;
}

/** A SessionRequest's id field: a tag byte and a uint64 varint (10 bytes at most). */
export const ID_BYTES = 11;
/** `more` (field 16) around each packed operation: a two-byte tag and a length of at most 5 bytes. */
const MORE_ITEM_BYTES = 7;

/**
 * An upper bound on what an operation adds to a packed message, from its encoded size without an id
 * (the size the SDK checks anyway before queueing it): that, its id and the `more` framing.
 */
export function packedBytes(encodedSize: number): number {
  return encodedSize + ID_BYTES + MORE_ITEM_BYTES;
}

export interface Queued {
  bytes: number;
  settled: boolean;
}

/**
 * Takes from the head of `queue` the operations for one message: at most `room` (what maxInFlight
 * leaves), PACK_OPS and PACK_BYTES, but always one, however large, if any is left.
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
