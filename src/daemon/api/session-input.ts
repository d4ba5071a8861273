/**
 * What a Session operation keeps alive while it runs and until its answer is flushed, made to be
 * what the session counts. A decoded bytes field is a view into grpc-js's buffer of the whole
 * message, so a 1-byte field kept the message's other bytes (a long key name, skipped unknown
 * fields, the other operations) alive uncounted: a client that did not read could pin about 16
 * messages per session past maxSessionBufferedBytes and maxBufferedBytes (review by helper-107).
 */

/** Copies every bytes field of a decoded message (at any depth) out of the buffer it was read from. */
export function detachBytes(message: unknown): void {
  if (!message || typeof message !== 'object') return;
  const fields = message as Record<string, unknown>;
  for (const [name, value] of Object.entries(fields)) {
    if (value instanceof Uint8Array) fields[name] = copyOf(value);
    else if (Array.isArray(value)) value.forEach((item, i) => (item instanceof Uint8Array ? (value[i] = copyOf(item)) : detachBytes(item)));
    else detachBytes(value);
  }
}

/** Not from Node's shared pool: a small pooled copy would keep an 8 KiB slab alive instead. */
function copyOf(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/**
 * The memory a decoded message holds: its bytes fields, and its text fields at two bytes per
 * character (how V8 may store them), at any depth.
 */
export function heldBytes(message: unknown): number {
  if (!message || typeof message !== 'object') return 0;
  let n = 0;
  for (const value of Object.values(message)) {
    if (value instanceof Uint8Array) n += value.byteLength;
    else if (typeof value === 'string') n += 2 * value.length;
    else if (value && typeof value === 'object') n += heldBytes(value); // nested messages, lists, maps
  }
  return n;
}
