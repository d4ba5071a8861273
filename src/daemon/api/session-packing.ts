/**
 * Several Session operations per gRPC message, both ways (session.proto, "Packing"). unpack() turns
 * one SessionRequest into the operations it carries; AnswerPacker gathers the answers that become
 * ready in one turn of the event loop into as few SessionResponses as its caps allow. Neither runs
 * operations: session.ts does, one by one, exactly as for single-operation messages.
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { SessionResponseSchema, type SessionRequest, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { ApiError, ErrorReason, invalidField, Status } from './errors.js';

/** One operation of a message; `refused` is its answer when it may not run (nested `more`). */
export interface SessionItem {
  id: bigint;
  op: SessionRequest['op'];
  refused?: ApiError;
}

const nested = () => invalidField('more', 'an operation in `more` carries `more` itself; packing is one level only — put every operation in the top-level `more`');

/**
 * The operations of one message in order: the top level, then each of `more`. An item of `more`
 * with `more` of its own is refused, and so is every operation nested in it (each id is answered
 * once). More than `maxItems` operations in all is the whole message's fault: an error to end the
 * stream with (counted without building the list further, so a hostile message costs no more).
 */
export function unpack(req: SessionRequest, maxItems: number): SessionItem[] | ApiError {
  const items: SessionItem[] = [{ id: req.id, op: req.op }];
  for (const m of req.more) {
    if (m.more.length === 0) {
      items.push({ id: m.id, op: m.op });
      if (items.length > maxItems) return tooMany(items.length, maxItems);
      continue;
    }
    const refused = nested();
    const stack: SessionRequest[] = [m];
    while (stack.length > 0) {
      const r = stack.pop()!;
      items.push({ id: r.id, op: r.op, refused });
      if (items.length > maxItems) return tooMany(items.length, maxItems);
      for (let i = r.more.length - 1; i >= 0; i--) stack.push(r.more[i]!);
    }
  }
  return items;
}

function tooMany(atLeast: number, limit: number): ApiError {
  return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, `a Session message carries more than ${limit} operations (counting \`more\`); the limit is ${limit} — send fewer per message`, {
    actual_items: String(atLeast),
    limit_items: String(limit),
  });
}

export interface PackingCaps {
  /** Most answers in one SessionResponse. */
  maxOps: number;
  /** Most bytes in one SessionResponse, as answerBytes() estimates them; a larger answer goes alone. */
  maxBytes: number;
}

/**
 * 64 answers or 60 KiB. maxMessageBytes (the daemon's send limit too) is always at least 64 KiB
 * more than the largest single answer (config.ts minMessageBytes), so a packed message fits
 * whatever the limits, and so does a lone answer of any size the limits allow.
 */
export const DEFAULT_PACKING: PackingCaps = { maxOps: 64, maxBytes: 60 * 1024 };

/**
 * An upper bound on the wire size of an answer inside `more`: its bytes fields, its strings (key
 * names, an error's message and metadata; 3 bytes a character at most in UTF-8), 32 bytes for id,
 * tags, lengths and numbers.
 */
export function answerBytes(value: unknown): number {
  let n = 32;
  if (!value || typeof value !== 'object') return n;
  for (const v of Object.values(value)) {
    if (v instanceof Uint8Array) n += v.byteLength + 4;
    else if (typeof v === 'string') n += 3 * v.length + 2;
    else if (typeof v !== 'object' || v === null) n += 10;
    else n += answerBytes(v); // metadata map, nested messages
  }
  return n;
}

interface Pending {
  answers: SessionResponse[];
  bytes: number;
  written: (() => void)[];
}

/**
 * Gathers answers and writes them packed: the first of a message at the top level, the others in
 * `more`. A message goes out when a cap is reached, on setImmediate after the first answer (so all
 * answers ready in the same turn share it), or on flush(). `write` is grpc-js' call.write: its
 * callback (the message handed to the connection) calls every packed answer's `written`.
 */
export class AnswerPacker {
  private pending: Pending | undefined;
  private scheduled: NodeJS.Immediate | undefined;
  /** Messages and answers written, for tests and diagnostics. */
  messages = 0;
  answers = 0;

  constructor(
    private readonly write: (message: SessionResponse, written: () => void) => void,
    private readonly caps: PackingCaps = DEFAULT_PACKING,
  ) {}

  get empty(): boolean {
    return this.pending === undefined;
  }

  /** Queues an answer; `bytes` is answerBytes() of its result's value. */
  add(id: bigint, result: MessageInitShape<typeof SessionResponseSchema>['result'], bytes: number, written: () => void): void {
    const answer = create(SessionResponseSchema, { id, result });
    if (this.pending && (this.pending.answers.length >= this.caps.maxOps || this.pending.bytes + bytes > this.caps.maxBytes)) this.flush();
    const p = (this.pending ??= { answers: [], bytes: 0, written: [] });
    p.answers.push(answer);
    p.bytes += bytes;
    p.written.push(written);
    this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Writes what is pending now. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    const [first, ...rest] = p.answers;
    first!.more = rest;
    this.messages++;
    this.answers += p.answers.length;
    this.write(first!, () => {
      for (const w of p.written) w();
    });
  }

  /** Drops what is pending (the stream is over), releasing it as if written. */
  discard(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const p = this.pending;
    this.pending = undefined;
    for (const w of p?.written ?? []) w();
  }
}
