/**
 * A Session while the daemon stops (drain.ts): it reads nothing more, answers what it read, and ends
 * with UNAVAILABLE / SHUTTING_DOWN. Found by review: a busy client kept its session through the
 * whole drain period, which then cut it off (operations CANCELLED, done or not, the stop delayed).
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Drain } from './drain.js';
import { hashOp, randomOp, startSession, turn } from './session-call.test-support.js';

describe('Session during the daemon stop', () => {
  it('answers what it read, reads nothing more, then ends UNAVAILABLE / SHUTTING_DOWN, audited so', async () => {
    const drain = new Drain();
    const s = startSession({}, false, undefined, { drain, endOnError: true });
    s.send(hashOp(1n)); // runs until the test answers it
    s.send(randomOp(2n, 16));
    await expect.poll(() => s.answers().map((a) => a.id)).toEqual([2n]);
    drain.start();
    s.send(randomOp(3n, 16)); // sent after the stop began: never read, so never done
    await turn();
    expect(s.errors).toHaveLength(0); // operation 1 still runs
    s.pending[0]!(Buffer.alloc(32));
    await expect.poll(() => s.errors.length).toBe(1);
    expect(s.answers().map((a) => a.id)).toEqual([2n, 1n]);
    expect(s.errors[0]).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(String((s.errors[0] as grpc.ServiceError).details)).toMatch(/shutting down.*retry/);
    expect(s.audit.map((a) => `${a.rpc} ${a.outcome}`)).toEqual(['Session/generateRandom OK', 'Session/hash OK', 'CryptoService/Session UNAVAILABLE']);
    expect(s.audit.at(-1)).toMatchObject({ reason: 'SHUTTING_DOWN' });
  });

  it('a session opened once the stop began ends at once, having done nothing', async () => {
    const drain = new Drain();
    drain.start();
    const s = startSession({}, false, undefined, { drain, endOnError: true });
    s.send(randomOp(1n, 16));
    await expect.poll(() => s.errors.length).toBe(1);
    expect(s.errors[0]).toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(s.answers()).toEqual([]);
    expect(s.audit.map((a) => `${a.rpc} ${a.outcome}`)).toEqual(['CryptoService/Session UNAVAILABLE']);
  });
});
