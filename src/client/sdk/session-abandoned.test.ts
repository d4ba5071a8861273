/**
 * Session slots held by operations the daemon never answers (a faulty or hung daemon) after their
 * callers gave up (deadline, abort): they must not wedge the session, nor keep its stream open.
 */
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isCancelled, isDeadlineExceeded, isRingfenceError } from './index.js';
import type { SessionRequest, SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { RingfenceSession, type SessionOptions } from './session.js';
import { Transport } from './transport.js';
import { useFakeServer } from './test-server.js';

const env = useFakeServer();

/**
 * Operations on the wire, as the session's stream calls see them: written, less answered or dropped
 * with their stream (a cancel goes out before anything written after it). The fake cannot count
 * this across streams: grpc-js tells it of a cancel only after it read what followed.
 */
const wire = { now: 0, max: 0, base: 0 };
/** The most this test's sessions had on the wire at once (a failed test may leave operations there). */
const wirePeak = () => wire.max - wire.base;
let transport: Transport;
beforeAll(async () => {
  transport = new Transport(env.fake.socketPath, 30_000);
  const bidi = transport.bidi.bind(transport);
  transport.bidi = ((...args: Parameters<typeof bidi>) => {
    const started = bidi(...args);
    const call = started.call as unknown as grpc.ClientDuplexStream<SessionRequest, SessionResponse>;
    let held = 0;
    const add = (n: number) => {
      held += n;
      wire.now += n;
      wire.max = Math.max(wire.max, wire.now);
    };
    const write = call.write.bind(call) as (m: SessionRequest) => boolean;
    call.write = ((m: SessionRequest) => {
      add(1 + m.more.length);
      return write(m);
    }) as typeof call.write;
    call.on('data', (r: SessionResponse) => add(-1 - r.more.length));
    const drop = () => add(-held);
    const cancel = call.cancel.bind(call);
    call.cancel = () => {
      drop();
      cancel();
    };
    call.on('error', drop);
    call.on('end', drop);
    return started;
  }) as typeof transport.bidi;
  // Connected before the tests: their short deadlines must pass after the fake has the operations.
  const warm = new RingfenceSession(transport);
  await warm.hash('warm up');
  await warm.close();
});
afterAll(() => transport.close());
const session = (opts: SessionOptions) => new RingfenceSession(transport, opts);

const rejection = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The fake learns that a stream ended some time after the client ended it. */
const streamsOpenBecomes = async (n: number) => {
  for (const end = Date.now() + 2000; env.fake.stats.sessionStreamsOpen !== n && Date.now() < end; ) await sleep(10);
  expect(env.fake.stats.sessionStreamsOpen).toBe(n);
};
const text = (r: SessionRequest) => (r.op.case === 'hash' ? Buffer.from(r.op.value.data).toString() : '');

/** Every hash operation the fake received, by its data; those starting with "hang" are never answered. */
let received: string[];
beforeEach(() => {
  received = [];
  env.fake.sessionDelayMs = 3;
  env.fake.sessionSwallows = (r) => {
    received.push(text(r));
    return text(r).startsWith('hang');
  };
  wire.max = wire.base = wire.now;
});

describe('a session whose slots are all held by operations given up on', () => {
  it('sends later operations on a fresh stream, and cancels the old one', async () => {
    const { fake } = env;
    const s = session({ maxInFlight: 4 });
    const [streams, open] = [fake.stats.sessionStreams, fake.stats.sessionStreamsOpen];
    const hung = await Promise.all(Array.from({ length: 4 }, (_, i) => rejection(s.hash(`hang ${i}`, 'sha256', { timeoutMs: 50 }))));
    for (const e of hung) expect(isDeadlineExceeded(e)).toBe(true);
    expect(s.outstanding).toBe(4); // sent, unanswered: still on the wire
    // Not reclaimed, those 4 slots held these back until their own deadline.
    const after = await Promise.all(Array.from({ length: 10 }, (_, i) => s.hash(`after ${i}`, 'sha256', { timeoutMs: 3000 })));
    expect(after.map((d) => d.digest.length)).toEqual(Array(10).fill(32));
    expect(fake.stats.sessionStreams - streams).toBe(2);
    expect(wirePeak()).toBe(4);
    await s.close();
    await streamsOpenBecomes(open);
  });

  it('work already queued goes out once the last slot is given up, not at its own deadline', async () => {
    const s = session({ maxInFlight: 2 });
    const hung = [rejection(s.hash('hang a', 'sha256', { timeoutMs: 40 })), rejection(s.hash('hang b', 'sha256', { timeoutMs: 80 }))];
    await sleep(10); // both sent, every slot taken
    const queued = Array.from({ length: 5 }, (_, i) => s.hash(`queued ${i}`, 'sha256', { timeoutMs: 3000 }));
    expect((await Promise.all(queued)).length).toBe(5);
    for (const e of await Promise.all(hung)) expect(isDeadlineExceeded(e)).toBe(true);
    expect(received.filter((t) => t.startsWith('queued')).sort()).toEqual(['queued 0', 'queued 1', 'queued 2', 'queued 3', 'queued 4']);
    await s.close();
  });

  it('the daemon never answering operations still awaited is backpressure: nothing is failed or sent again', async () => {
    const { fake } = env;
    const s = session({ maxInFlight: 2 });
    const streams = fake.stats.sessionStreams;
    const awaited = [rejection(s.hash('hang 1', 'sha256', { timeoutMs: 300 })), rejection(s.hash('hang 2', 'sha256', { timeoutMs: 300 }))];
    await sleep(10);
    const queued = rejection(s.hash('queued', 'sha256', { timeoutMs: 100 }));
    expect(isDeadlineExceeded(await queued)).toBe(true);
    expect(fake.stats.sessionStreams - streams).toBe(1);
    for (const e of await Promise.all(awaited)) expect(isDeadlineExceeded(e)).toBe(true);
    expect(received).toEqual(['hang 1', 'hang 2']);
    await s.close();
  });
});

describe('a session whose slots are held partly by operations given up on', () => {
  it('stops sending on that stream; operations still awaited there get their one answer, then it is cancelled', async () => {
    const { fake } = env;
    const s = session({ maxInFlight: 4 });
    const streams = fake.stats.sessionStreams;
    fake.sessionDelayMs = 200;
    const hung = [rejection(s.hash('hang a', 'sha256', { timeoutMs: 30 })), rejection(s.hash('hang b', 'sha256', { timeoutMs: 30 }))];
    const slow = [s.hash('slow a'), s.hash('slow b')];
    await sleep(10);
    for (const e of await Promise.all(hung)) expect(isDeadlineExceeded(e)).toBe(true);
    fake.sessionDelayMs = 3;
    const queued = Array.from({ length: 12 }, (_, i) => s.hash(`queued ${i}`));
    const digests = await Promise.all([...slow, ...queued]);
    expect(digests.map((d) => d.digest.length)).toEqual(Array(14).fill(32));
    // The abandoned slots were given back with the old stream: none is held any longer.
    expect(s.outstanding).toBe(0);
    expect(fake.stats.sessionStreams - streams).toBe(2);
    expect(wirePeak()).toBe(4);
    // Each operation went out once.
    expect(new Set(received).size).toBe(received.length);
    expect(received.length).toBe(16);
    await s.close();
  });

  it('is wedged no longer once the operations still awaited there are given up too', async () => {
    const { fake } = env;
    const s = session({ maxInFlight: 4 });
    const streams = fake.stats.sessionStreams;
    const early = [rejection(s.hash('hang 1', 'sha256', { timeoutMs: 30 })), rejection(s.hash('hang 2', 'sha256', { timeoutMs: 30 }))];
    const late = [rejection(s.hash('hang 3', 'sha256', { timeoutMs: 120 })), rejection(s.hash('hang 4', 'sha256', { timeoutMs: 120 }))];
    await sleep(10);
    const queued = Array.from({ length: 6 }, (_, i) => s.hash(`queued ${i}`, 'sha256', { timeoutMs: 3000 }));
    expect((await Promise.all(queued)).length).toBe(6);
    for (const e of await Promise.all([...early, ...late])) expect(isDeadlineExceeded(e)).toBe(true);
    expect(fake.stats.sessionStreams - streams).toBe(2);
    expect(wirePeak()).toBe(4);
    await s.close();
  });

  it("aborting the session cancels the stream it stopped sending on, and that stream's awaited operations", async () => {
    const { fake } = env;
    const ac = new AbortController();
    const s = session({ maxInFlight: 2, signal: ac.signal });
    const [streams, open] = [fake.stats.sessionStreams, fake.stats.sessionStreamsOpen];
    const hung = rejection(s.hash('hang a', 'sha256', { timeoutMs: 30 }));
    const awaited = rejection(s.hash('hang b'));
    await sleep(10);
    const queued = rejection(s.hash('queued'));
    expect(isDeadlineExceeded(await hung)).toBe(true);
    await sleep(20);
    expect(fake.stats.sessionStreams - streams).toBe(1); // draining, and no slot free for a fresh one
    ac.abort();
    expect(isCancelled(await awaited)).toBe(true);
    expect(isCancelled(await queued)).toBe(true);
    await streamsOpenBecomes(open);
  });
});

describe('an idle session whose only unanswered operations were given up on', () => {
  it('releases its stream after the idle timeout', async () => {
    const { fake } = env;
    const s = session({ idleTimeoutMs: 20 });
    const open = fake.stats.sessionStreamsOpen;
    expect(isDeadlineExceeded(await rejection(s.hash('hang', 'sha256', { timeoutMs: 30 })))).toBe(true);
    await streamsOpenBecomes(open);
    expect(s.outstanding).toBe(0);
    expect((await s.hash('again')).digest.length).toBe(32);
    await s.close();
  });
});

// Found by review (helper-84): mutants the cases above let through (a second stream set draining
// while one drains, a late answer not counted back, a daemon's error answer counted as given up)
// fail here. Seeded, so a failure repeats; what is asserted does not depend on timing.
describe('a session under a random mix of unanswered, late, refused, timed-out and aborted operations', () => {
  for (let seed = 41; seed <= 80; seed++) {
    it(`never passes maxInFlight, sends nothing twice, fails only what timed out, was aborted or refused, and ends clean (seed ${seed})`, async () => {
      let x = seed * 7919;
      const rnd = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
      const { fake } = env;
      fake.sessionDelayMs = 5 + Math.floor(rnd() * 60); // answers come late to callers with short deadlines
      const max = 1 + Math.floor(rnd() * 5);
      const s = session({ maxInFlight: max, idleTimeoutMs: 50 });
      const open = fake.stats.sessionStreamsOpen;
      const problems: string[] = [];
      const all: Promise<unknown>[] = [];
      for (let round = 0; round < 6; round++) {
        for (let i = 0, n = 1 + Math.floor(rnd() * 8); i < n; i++) {
          const kind = rnd();
          const label = `${round}.${i}`;
          const ac = new AbortController();
          const timeoutMs = rnd() < 0.5 ? 10 + Math.floor(rnd() * 150) : undefined;
          if (rnd() < 0.2) setTimeout(() => ac.abort(), Math.floor(rnd() * 100));
          const [hang, refused] = [kind < 0.35, kind >= 0.35 && kind < 0.5];
          const p = hang
            ? s.hash(`hang ${label}`, 'sha256', { timeoutMs: timeoutMs ?? 100, signal: ac.signal })
            : refused
              ? s.generateRandom(0, { timeoutMs, signal: ac.signal }) // the fake answers INVALID_ARGUMENT
              : s.hash(`ok ${label}`, 'sha256', { timeoutMs, signal: ac.signal });
          all.push(
            p.then(
              () => void (hang || refused ? problems.push(`${label} resolved`) : undefined),
              (e: unknown) => {
                if (!isRingfenceError(e)) return void problems.push(`${label}: ${String(e)}`);
                const { code, message } = e;
                if (isDeadlineExceeded(e) || (ac.signal.aborted && isCancelled(e)) || (refused && code === 3)) return;
                problems.push(`${label}: ${message} (code ${code})`);
              },
            ),
          );
        }
        await sleep(Math.floor(rnd() * 80));
      }
      await Promise.all(all);
      expect(problems).toEqual([]);
      expect(wirePeak()).toBeLessThanOrEqual(max);
      const hashes = received.filter((t) => t.startsWith('ok') || t.startsWith('hang'));
      expect(new Set(hashes).size).toBe(hashes.length);
      // Every caller has its answer: within the idle timeout nothing is held on the wire.
      for (const end = Date.now() + 2000; s.outstanding > 0 && Date.now() < end; ) await sleep(10);
      expect(s.outstanding).toBe(0);
      await s.close();
      await streamsOpenBecomes(open);
    });
  }
});
