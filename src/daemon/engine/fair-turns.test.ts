/**
 * A busy key's queue across callers, through the real CryptoEngine with AF_ALG faked: requests
 * waiting for its operation sockets are served in turns across callers (engine.forCaller), and one
 * caller's share of the queue is bounded (review by helper-150: first come, first served let one
 * uid delay or refuse every other caller of a shared key).
 */
import { describe, expect, it, vi } from 'vitest';
import type { KernelAlg } from '../../capabilities/suites.js';

// Each request's IV names it; the kernel answers only when the test lets it.
// Each async call also records whose it is, as the libuv gate (libc.ts callAsync) is told.
const fake = vi.hoisted(() => ({ order: [] as string[], gates: [] as (() => void)[], owners: [] as string[] }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const base = (await import('./fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<{ readResultAsync: (fd: number, out: Buffer) => Promise<number> }>());
  return {
    ...base,
    sendRequestAsync: async (_fd: number, header: { iv?: Buffer }, _data: Buffer[], _flags: number, owner: string) => {
      fake.order.push(header.iv?.toString().replace(/\0+$/, '') ?? '');
      fake.owners.push(`send ${owner}`);
      await new Promise<void>((resolve) => fake.gates.push(resolve));
    },
    readResultAsync: async (fd: number, out: Buffer, owner: string) => {
      fake.owners.push(`read ${owner}`);
      return base.readResultAsync(fd, out);
    },
  };
});

const { CryptoEngine } = await import('./engine.js');
const { isEngineError } = await import('./errors.js');
const GCM = { type: 'aead', name: 'gcm(aes)' } as KernelAlg;
const KEY = 7;

function encrypt(engine: InstanceType<typeof CryptoEngine>, name: string): Promise<Buffer> {
  const iv = Buffer.alloc(12);
  iv.write(name);
  // asyncThresholdBytes 0: every request holds its socket across an await, as large ones do.
  return engine.aeadEncrypt(GCM, KEY, 16, iv, Buffer.alloc(0), Buffer.alloc(32));
}

/** Lets the kernel answer the running requests, one at a time, until nothing is running. */
async function runAll(): Promise<void> {
  for (;;) {
    await new Promise((r) => setImmediate(r));
    const gate = fake.gates.shift();
    if (!gate) return;
    gate();
  }
}

describe("a busy key's waiting requests", () => {
  it('are served in turns across callers: a newcomer waits for one of the flood, not all of it', async () => {
    fake.order.length = 0;
    const engine = new CryptoEngine({ maxOpSockets: 1, asyncThresholdBytes: 0 });
    const flood = engine.forCaller('uid:1001');
    const other = engine.forCaller('uid:1002');
    const done = Array.from({ length: 50 }, (_, i) => encrypt(flood, `flood${i}`));
    done.push(encrypt(other, 'other'));
    await runAll();
    await Promise.all(done);
    // flood0 was running when the rest queued; then the turns alternate.
    expect(fake.order.slice(0, 4)).toEqual(['flood0', 'flood1', 'other', 'flood2']);
    expect(fake.order).toHaveLength(51);
    engine.close();
  });

  it("bound each caller's share: past it that caller is refused BUSY, another caller still queues", async () => {
    const engine = new CryptoEngine({ maxOpSockets: 1, maxQueuedRequests: 8, maxQueuedRequestsPerCaller: 3, asyncThresholdBytes: 0 });
    const flood = engine.forCaller('uid:1001');
    const other = engine.forCaller('uid:1002');
    const settled = Promise.allSettled(Array.from({ length: 6 }, (_, i) => encrypt(flood, `f${i}`)));
    const others = Promise.allSettled([encrypt(other, 'o0'), encrypt(other, 'o1')]);
    await runAll();
    const floodResults = await settled;
    // One running, three waiting (its share), two refused.
    const refused = floodResults.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(2);
    for (const r of refused) {
      const err = (r as PromiseRejectedResult).reason;
      expect(isEngineError(err, 'BUSY')).toBe(true);
      expect(err.limit).toBe('queued_requests_per_caller');
      expect(String(err.message)).toMatch(/share/);
    }
    expect((await others).every((r) => r.status === 'fulfilled')).toBe(true);
    engine.close();
  });

  it('share one queue bound across callers, and one set of transforms', async () => {
    const engine = new CryptoEngine({ maxOpSockets: 1, maxQueuedRequests: 2, asyncThresholdBytes: 0 });
    const views = [1, 2, 3, 4].map((uid) => engine.forCaller(`uid:${uid}`));
    const settled = Promise.allSettled(views.map((v, i) => encrypt(v, `v${i}`)));
    await runAll();
    const results = await settled;
    // One running, two waiting, the fourth caller refused by the total.
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    expect((results[3] as PromiseRejectedResult).reason.limit).toBe('queued_requests');
    expect(engine.openTransforms).toBe(1);
    expect(views[2]!.openTransforms).toBe(1);
    expect(engine.forCaller('')).toBe(engine);
    engine.close();
  });

  it("tell the libuv gate whose each async call is, so it serves them in turns too ('' for the daemon's own)", async () => {
    fake.owners.length = 0;
    const engine = new CryptoEngine({ asyncThresholdBytes: 0 });
    const SHA = { type: 'hash', name: 'sha256' } as KernelAlg;
    const done = [encrypt(engine.forCaller('uid:1001'), 'a'), encrypt(engine, 'b'), engine.forCaller('uid:1002').digest(SHA, undefined, 32, Buffer.alloc(64))];
    await runAll();
    await Promise.all(done);
    expect(fake.owners).toEqual(['send uid:1001', 'send ', 'send uid:1002', 'read uid:1001', 'read ']);
    engine.close();
  });

  it("a caller's view (one per unary call) is one small object: it shares the engine's options, not a copy", () => {
    const engine = new CryptoEngine({ maxOpSockets: 3 });
    const view = engine.forCaller('uid:1001');
    expect(view.options).toBe(engine.options);
    expect(view.forCaller('uid:1002').options).toBe(engine.options);
    expect(view.options.maxOpSockets).toBe(3);
    engine.close();
  });
});
