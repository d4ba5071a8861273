import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { toBinary } from '@bufbuild/protobuf';
import { SessionRequestSchema, SessionResponseSchema, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { ApiError, Status } from './errors.js';
import { AnswerPacker, answerBytes, unpack } from './session-packing.js';

const hash = (id: bigint, more: ReturnType<typeof req>[] = []) => req(id, more);
function req(id: bigint, more: ReturnType<typeof create<typeof SessionRequestSchema>>[]) {
  return create(SessionRequestSchema, { id, op: { case: 'hash', value: { data: new Uint8Array(1) } }, more });
}
const turn = () => new Promise((r) => setImmediate(r));

describe('unpack', () => {
  it('a message without `more` is one operation, as before packing', () => {
    const items = unpack(hash(7n), 1000);
    expect(items).toEqual([{ id: 7n, op: hash(7n).op }]);
  });

  it('lists the top level, then `more` in order', () => {
    const items = unpack(hash(1n, [hash(2n), hash(3n)]), 1000) as { id: bigint; refused?: ApiError }[];
    expect(items.map((i) => i.id)).toEqual([1n, 2n, 3n]);
    expect(items.every((i) => !i.refused)).toBe(true);
  });

  it('refuses an item of `more` with `more` of its own, and everything nested in it, each id once', () => {
    const msg = hash(1n, [hash(2n), hash(3n, [hash(4n, [hash(5n)]), hash(6n)]), hash(7n)]);
    const items = unpack(msg, 1000) as { id: bigint; refused?: ApiError }[];
    expect(items.map((i) => i.id)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n]);
    expect(items.filter((i) => i.refused).map((i) => i.id)).toEqual([3n, 4n, 5n, 6n]);
    const e = items[2]!.refused!;
    expect(e.code).toBe(Status.INVALID_ARGUMENT);
    expect(e.reasonName).toBe('INVALID_FIELD');
    expect(e.metadata).toEqual({ field: 'more', constraint: e.message });
  });

  it('more operations than the limit, nested ones included, is an error for the whole message', () => {
    expect(Array.isArray(unpack(hash(1n, [hash(2n), hash(3n)]), 3))).toBe(true);
    const e = unpack(hash(1n, [hash(2n), hash(3n), hash(4n)]), 3) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(e.reasonName).toBe('BATCH_TOO_LARGE');
    expect(e.metadata.limit_items).toBe('3');
    expect(unpack(hash(1n, [hash(2n, [hash(3n), hash(4n)])]), 3)).toBeInstanceOf(ApiError);
  });
});

describe('AnswerPacker', () => {
  function packer(caps?: { maxOps: number; maxBytes: number }) {
    const messages: SessionResponse[] = [];
    const callbacks: (() => void)[] = [];
    const p = new AnswerPacker((m, written) => {
      messages.push(m);
      callbacks.push(written);
    }, caps);
    return { p, messages, callbacks };
  }
  const ok = { case: 'generateRandom' as const, value: { data: new Uint8Array(4) } };

  it('packs the answers ready in one turn into one message: the first on top, the others in `more`', async () => {
    const { p, messages } = packer();
    for (let i = 1n; i <= 5n; i++) p.add(i, ok, 4, () => {});
    expect(messages).toHaveLength(0);
    await turn();
    expect(messages).toHaveLength(1);
    expect([messages[0]!.id, ...messages[0]!.more.map((m) => m.id)]).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(messages[0]!.more.every((m) => m.more.length === 0)).toBe(true);
    p.add(6n, ok, 4, () => {});
    await turn();
    expect(messages).toHaveLength(2);
    expect(messages[1]!.id).toBe(6n);
    expect(messages[1]!.more).toEqual([]);
    expect([p.messages, p.answers]).toEqual([2, 6]);
  });

  it('starts a new message at the operations cap and before the byte cap; a large answer goes alone', async () => {
    const { p, messages } = packer({ maxOps: 3, maxBytes: 100 });
    for (let i = 1n; i <= 7n; i++) p.add(i, ok, 10, () => {});
    p.add(8n, ok, 95, () => {});
    p.add(9n, ok, 500, () => {});
    p.add(10n, ok, 10, () => {});
    await turn();
    expect(messages.map((m) => [m.id, ...m.more.map((x) => x.id)])).toEqual([[1n, 2n, 3n], [4n, 5n, 6n], [7n], [8n], [9n], [10n]]);
  });

  it('calls every packed answer back once its message is written; discard releases what is pending', async () => {
    const { p, messages, callbacks } = packer();
    const written = vi.fn();
    p.add(1n, ok, 4, written);
    p.add(2n, ok, 4, written);
    p.flush();
    expect(messages).toHaveLength(1);
    expect(written).not.toHaveBeenCalled();
    callbacks[0]!();
    expect(written).toHaveBeenCalledTimes(2);
    const dropped = vi.fn();
    p.add(3n, ok, 4, dropped);
    p.discard();
    await turn();
    expect(dropped).toHaveBeenCalledOnce();
    expect(messages).toHaveLength(1);
    expect(p.empty).toBe(true);
  });
});

describe('answerBytes', () => {
  it('is never below what an answer adds to a packed message', () => {
    const e = new ApiError(Status.NOT_FOUND, 0, 'key "ключ-é" does not exist — a message with non-ASCII', { key_name: 'ключ-é', field: 'x'.repeat(64) });
    const results = [
      { case: 'encrypt' as const, value: { ciphertext: new Uint8Array(1076), keyName: 'k'.repeat(64), keyVersion: 4_000_000_000 } },
      { case: 'generateRandom' as const, value: { data: new Uint8Array(200_000) } },
      { case: 'verifyMac' as const, value: { valid: true, keyName: 'm', keyVersion: 1 } },
      { case: 'error' as const, value: e.toItemStatus() },
    ];
    for (const result of results) {
      const alone = toBinary(SessionResponseSchema, create(SessionResponseSchema, { id: 1n }));
      const packed = toBinary(SessionResponseSchema, create(SessionResponseSchema, { id: 1n, more: [{ id: 0xffff_ffff_ffff_ffffn, result }] }));
      expect(answerBytes(result.value), result.case).toBeGreaterThanOrEqual(packed.length - alone.length);
    }
  });
});
