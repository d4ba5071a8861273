/**
 * What Session operations keep alive, against what the session counts (session-input.ts): with
 * V8's collector run by hand, the request buffers a client's messages came in must be gone once
 * their operations hold only copies, and a client that never reads must not get more messages
 * read than the session's byte cap allows (review by helper-107).
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, test } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { SessionRequestSchema, type SessionRequest } from '../../gen/ringfence/v1/session_pb.js';
import { daemonServiceDefinition } from './decode.js';
import { startSession, turn } from './session-call.test-support.js';
import { detachBytes, heldBytes } from './session-input.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1 << 20;
const collect = async () => {
  for (let i = 0; i < 3; i++) {
    await turn();
    gc();
  }
};
const deserialize = daemonServiceDefinition(CryptoService, 1000).session!.requestDeserialize as (b: Buffer) => SessionRequest;

describe('detachBytes, heldBytes', () => {
  test('bytes fields at every depth become copies of their own; text counts two bytes a character', () => {
    const wire = Buffer.from('abcdefgh');
    const message = { $typeName: 'x', data: wire.subarray(0, 2), list: [wire.subarray(2, 4), { inner: wire.subarray(4, 6) }], name: 'key' };
    detachBytes(message);
    for (const b of [message.data, message.list[0], (message.list[1] as { inner: Uint8Array }).inner] as Uint8Array[]) {
      expect(b.buffer).not.toBe(wire.buffer);
      expect(b.byteLength).toBe(b.buffer.byteLength);
    }
    expect(Buffer.concat([message.data, message.list[0] as Uint8Array, (message.list[1] as { inner: Uint8Array }).inner]).toString()).toBe('abcdef');
    expect(heldBytes(message)).toBe(2 * 1 + 2 + 2 + 2 + 2 * 3);
  });
});

describe('a client that sends and never reads', () => {
  test('a 1-byte field does not keep the rest of its message (a 1 MiB unknown field) alive', async () => {
    const s = startSession({}, true);
    const refs: WeakRef<ArrayBuffer>[] = [];
    // Hash of 1 byte, then field 15 (unknown to SessionRequest) of 1 MiB: decoded, it is skipped.
    // Made in a function of its own: the test's suspended frame keeps no reference to the buffer.
    const received = (id: bigint): SessionRequest => {
      const known = toBinary(SessionRequestSchema, create(SessionRequestSchema, { id, op: { case: 'hash', value: { data: new Uint8Array(1) } } }));
      const wire = Buffer.concat([known, Buffer.from([(15 << 3) | 2, 0x80, 0x80, 0x40]), Buffer.alloc(MiB)]);
      refs.push(new WeakRef(wire.buffer));
      return deserialize(wire);
    };
    for (let id = 1n; id <= 8n; id++) {
      s.call.push(received(id));
      await turn();
    }
    // The hash operations wait on the test's engine: each keeps its request until it is answered.
    expect(s.pending.length).toBe(8);
    await collect();
    expect(refs.filter((r) => r.deref() !== undefined).length).toBe(0);
    for (const answer of s.pending.splice(0)) answer(Buffer.alloc(32));
    await turn();
  });

  test('long key names count: reading stops at the byte cap, not after about 16 messages', async () => {
    const cap = 64 * 1024;
    const s = startSession({ maxSessionBufferedBytes: cap }, true);
    const refs: WeakRef<object>[] = [];
    let sent = 0;
    while (!s.call.isPaused() && sent < 64) {
      const req = create(SessionRequestSchema, { id: BigInt(++sent), op: { case: 'encrypt', value: { keyName: 'k'.repeat(MiB) + sent } } });
      refs.push(new WeakRef(req.op.value as object));
      s.call.push(req as SessionRequest);
      await turn();
    }
    await collect();
    // The first runs alone (one operation over the cap still runs) and is refused; its answer is
    // never read, so it holds the cap and nothing more starts.
    expect(s.audit.length).toBe(1);
    expect(sent).toBeLessThanOrEqual(2);
    expect(refs.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(2);
    expect(s.budget.held).toBeGreaterThan(2 * MiB);
  });
});
