/**
 * The pure parts of the daemon's flow control: what a session operation reserves, how far a call
 * reads ahead and writes behind, and when a call counts as gone (cancelled or past its deadline).
 * test/e2e/limits.kernel.test.ts checks the whole against a real daemon.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it, vi } from 'vitest';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import { limitReadAhead, limitWriteBehind, whenGone } from './handler.js';
import { ANSWER_ALLOWANCE, reservedBytes } from './session.js';
import { payloadBytes } from './audit.js';
import { HEADER_BYTES } from '../ciphertext/envelope.js';
import { MAX_DATA_KEY_BYTES } from '../ops/generate-data-key.js';

describe('reservedBytes (session byte cap)', () => {
  const op = (init: Parameters<typeof create<typeof SessionRequestSchema>>[1]) => create(SessionRequestSchema, init).op;

  it('reserves the answer of GenerateRandom up front, capped at maxPayloadBytes', () => {
    expect(reservedBytes(op({ op: { case: 'generateRandom', value: { lengthBytes: 65_536 } } }), 1 << 20)).toBe(65_536 + ANSWER_ALLOWANCE);
    expect(reservedBytes(op({ op: { case: 'generateRandom', value: { lengthBytes: 5 << 20 } } }), 1 << 20)).toBe((1 << 20) + ANSWER_ALLOWANCE);
  });

  it('reserves twice the input for other operations (the request and an answer about as large), and never zero', () => {
    const aad = new Uint8Array(10);
    expect(reservedBytes(op({ op: { case: 'encrypt', value: { keyName: 'k', plaintext: new Uint8Array(1000), associatedData: aad } } }), 1 << 20)).toBe(2020 + ANSWER_ALLOWANCE);
    expect(reservedBytes(op({}), 1 << 20)).toBe(ANSWER_ALLOWANCE);
  });

  it('reserves at least the largest answer of every kind of operation (found by review: a data key is twice its length)', () => {
    const bytes = (n: number) => new Uint8Array(n);
    // The largest tag of any suite; a stream's or envelope's header is HEADER_BYTES.
    const TAG = 32;
    const cases: [string, Parameters<typeof op>[0], Record<string, Uint8Array>][] = [
      ['encrypt', { op: { case: 'encrypt', value: { keyName: 'k', plaintext: bytes(0) } } }, { ciphertext: bytes(HEADER_BYTES + TAG) }],
      ['encrypt', { op: { case: 'encrypt', value: { keyName: 'k', plaintext: bytes(5000), associatedData: bytes(100) } } }, { ciphertext: bytes(5000 + HEADER_BYTES + TAG) }],
      ['decrypt', { op: { case: 'decrypt', value: { ciphertext: bytes(5000) } } }, { plaintext: bytes(5000 - HEADER_BYTES - 16) }],
      // The smallest tag (16) on the way in, the largest on the way out.
      ['reEncrypt', { op: { case: 'reEncrypt', value: { ciphertext: bytes(HEADER_BYTES + 16) } } }, { ciphertext: bytes(HEADER_BYTES + TAG) }],
      ['generateDataKey', { op: { case: 'generateDataKey', value: { keyName: 'k', lengthBytes: MAX_DATA_KEY_BYTES } } }, { ciphertext: bytes(MAX_DATA_KEY_BYTES + HEADER_BYTES + TAG), plaintext: bytes(MAX_DATA_KEY_BYTES) }],
      ['generateDataKey', { op: { case: 'generateDataKey', value: { keyName: 'k', associatedData: bytes(300) } } }, { ciphertext: bytes(32 + HEADER_BYTES + TAG), plaintext: bytes(32) }],
      ['computeMac', { op: { case: 'computeMac', value: { keyName: 'k', data: bytes(0) } } }, { mac: bytes(64) }],
      ['verifyMac', { op: { case: 'verifyMac', value: { keyName: 'k', data: bytes(10), mac: bytes(64) } } }, {}],
      ['hash', { op: { case: 'hash', value: { data: bytes(0) } } }, { digest: bytes(64) }],
      ['generateRandom', { op: { case: 'generateRandom', value: { lengthBytes: 4096 } } }, { data: bytes(4096) }],
    ];
    for (const [kind, init, answer] of cases) {
      const o = op(init);
      expect(o.case).toBe(kind);
      expect(reservedBytes(o, 1 << 20), kind).toBeGreaterThanOrEqual(payloadBytes(o.value) + payloadBytes(answer));
    }
  });
});

describe('limitReadAhead / limitWriteBehind', () => {
  it('a duplex reads one message ahead and reports backpressure after two unflushed writes', async () => {
    let reads = 0;
    const pending: (() => void)[] = [];
    const d = new Duplex({
      objectMode: true,
      read() {
        reads++;
        this.push({ n: reads });
      },
      write(_m, _e, cb) {
        pending.push(cb);
      },
    });
    limitReadAhead(d);
    limitWriteBehind(d, 2);
    d.read(0);
    await new Promise((r) => setImmediate(r));
    // With the default objectMode highWaterMark (16) Readable would have pulled 16 messages by now.
    expect(d.readableLength).toBe(1);
    expect(d.write({})).toBe(true);
    expect(d.write({})).toBe(false);
    const drained = vi.fn();
    d.on('drain', drained);
    // Flushing both (one at a time, as Writable hands them over) brings 'drain'.
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(drained).toHaveBeenCalledOnce();
    d.destroy();
  });
});

describe('whenGone', () => {
  function fakeCall(deadline: number) {
    return Object.assign(new EventEmitter(), { getDeadline: () => deadline });
  }

  it('fires DEADLINE_EXCEEDED at the deadline even without a cancel event', async () => {
    vi.useFakeTimers();
    try {
      const gone = vi.fn();
      whenGone(fakeCall(Date.now() + 1000), gone);
      vi.advanceTimersByTime(999);
      expect(gone).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(gone).toHaveBeenCalledExactlyOnceWith('DEADLINE_EXCEEDED', expect.any(Promise));
    } finally {
      vi.useRealTimers();
    }
  });

  it('waits out a deadline beyond setTimeout\'s 24.8-day range (a plain timer would end the call at once)', () => {
    vi.useFakeTimers();
    try {
      const gone = vi.fn();
      const dispose = whenGone(fakeCall(Date.now() + 40 * 86_400_000), gone);
      vi.advanceTimersByTime(30 * 86_400_000);
      expect(gone).not.toHaveBeenCalled();
      vi.advanceTimersByTime(10 * 86_400_000);
      expect(gone).toHaveBeenCalledExactlyOnceWith('DEADLINE_EXCEEDED', expect.any(Promise));
      dispose();
    } finally {
      vi.useRealTimers();
    }
  });

  it('fires CANCELLED once on a cancel before the deadline, and nothing after dispose', () => {
    const gone = vi.fn();
    const call = fakeCall(Infinity);
    whenGone(call, gone);
    call.emit('cancelled');
    call.emit('cancelled');
    expect(gone).toHaveBeenCalledExactlyOnceWith('CANCELLED', expect.any(Promise));

    const later = vi.fn();
    const call2 = fakeCall(Date.now() + 60_000);
    const dispose = whenGone(call2, later);
    dispose();
    call2.emit('cancelled');
    expect(later).not.toHaveBeenCalled();
  });
});
