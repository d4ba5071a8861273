/**
 * The kernel limits an operator sets in the config file (maxTransforms, maxOpSockets,
 * maxQueuedRequests, maxQueuedRequestsPerCaller) reach the engine the daemon builds, through the
 * real CryptoEngine with AF_ALG faked; before, the engine always ran on its built-in values.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { KernelAlg } from '../../capabilities/suites.js';
import { DEFAULT_LIMITS, resolveConfig, type DaemonConfig, type Limits } from '../config.js';

// Each request's IV names it; the kernel answers only when the test lets it.
const fake = vi.hoisted(() => ({ sent: [] as string[], gates: [] as (() => void)[], transforms: 0 }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const base = (await import('./fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<object>());
  return {
    ...base,
    openTransform: (...args: unknown[]) => (fake.transforms++, (base as unknown as { openTransform: (...a: unknown[]) => number }).openTransform(...args)),
    sendRequestAsync: async (_fd: number, header: { iv?: Buffer }) => {
      fake.sent.push(header.iv?.toString().replace(/\0+$/, '') ?? '');
      await new Promise<void>((resolve) => fake.gates.push(resolve));
    },
  };
});

const { CryptoEngine, DEFAULT_ENGINE_OPTIONS } = await import('./engine.js');
const { isEngineError } = await import('./errors.js');
const { engineOptionsFrom } = await import('./engine-options.js');
const GCM = { type: 'aead', name: 'gcm(aes)' } as KernelAlg;

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-engine-options-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The limits the daemon would run with for this config file's `limits`. */
function configured(limits: Partial<Limits>): Limits {
  const path = join(tmp, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify({ limits }));
  chmodSync(path, 0o644);
  return (resolveConfig(['--config', path, '--socket', '/s', '--state-dir', '/d'], {}, 0) as DaemonConfig).limits;
}

/** An engine as the daemon builds it from its config, every request async (holding its socket across an await). */
function engineFor(limits: Partial<Limits>): InstanceType<typeof CryptoEngine> {
  return new CryptoEngine({ ...engineOptionsFrom(configured(limits)), asyncThresholdBytes: 0 });
}

function encrypt(engine: InstanceType<typeof CryptoEngine>, name: string, key = 7): Promise<Buffer> {
  const iv = Buffer.alloc(12);
  iv.write(name);
  return engine.aeadEncrypt(GCM, key, 16, iv, Buffer.alloc(0), Buffer.alloc(32));
}

const tick = () => new Promise((r) => setImmediate(r));

/** Lets the kernel answer the running requests, one at a time, until nothing is running. */
async function runAll(): Promise<void> {
  for (;;) {
    await tick();
    const gate = fake.gates.shift();
    if (!gate) return;
    gate();
  }
}

describe('the configured kernel limits reach the engine', () => {
  it('unset, they are the engine\'s own defaults', () => {
    const { maxTransforms, maxOpSockets, maxQueuedRequests, maxQueuedRequestsPerCaller } = DEFAULT_ENGINE_OPTIONS;
    expect(engineOptionsFrom(DEFAULT_LIMITS)).toMatchObject({ maxTransforms, maxOpSockets, maxQueuedRequests, maxQueuedRequestsPerCaller });
  });

  it('maxOpSockets: that many requests run on one key at once, the next waits', async () => {
    fake.sent.length = 0;
    const engine = engineFor({ maxOpSockets: 3 });
    expect(engine.options.maxOpSockets).toBe(3);
    const done = ['a', 'b', 'c', 'd', 'e'].map((n) => encrypt(engine, n));
    await tick();
    expect(fake.sent).toEqual(['a', 'b', 'c']);
    await runAll();
    await Promise.all(done);
    expect(fake.sent).toEqual(['a', 'b', 'c', 'd', 'e']);
    engine.close();
  });

  it('maxQueuedRequests and maxQueuedRequestsPerCaller: refused past them, the message naming the setting and its value', async () => {
    const engine = engineFor({ maxOpSockets: 1, maxQueuedRequests: 5, maxQueuedRequestsPerCaller: 2 });
    const [a, b, c] = ['uid:1001', 'uid:1002', 'uid:1003'].map((uid) => engine.forCaller(uid));
    // a: one running, two waiting (its share), the fourth refused.
    const mine = Promise.allSettled(['a0', 'a1', 'a2', 'a3'].map((n) => encrypt(a!, n)));
    // b and c: two waiting each would make six; the last is refused by the total.
    const others = Promise.allSettled([encrypt(b!, 'b0'), encrypt(b!, 'b1'), encrypt(c!, 'c0'), encrypt(c!, 'c1')]);
    await runAll();
    const results = [...(await mine), ...(await others)];
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    const own = (results[3] as PromiseRejectedResult).reason;
    expect(isEngineError(own, 'BUSY') && own.limit).toBe('queued_requests_per_caller');
    expect(own.message).toBe('gcm(aes) with key 7: this caller already has 2 requests waiting for this key, its share (maxQueuedRequestsPerCaller); wait for answers before sending more');
    const total = (results[7] as PromiseRejectedResult).reason;
    expect(isEngineError(total, 'BUSY') && total.limit).toBe('queued_requests');
    expect(total.message).toBe("gcm(aes) with key 7: 5 requests are already waiting for this key, the daemon's limit (maxQueuedRequests); retry later");
    engine.close();
  });

  it('maxQueuedRequestsPerCaller left unset follows maxQueuedRequests (a quarter)', async () => {
    const engine = engineFor({ maxOpSockets: 1, maxQueuedRequests: 8 });
    expect(engine.options.maxQueuedRequestsPerCaller).toBe(2);
    const results = Promise.allSettled(['x0', 'x1', 'x2', 'x3'].map((n) => encrypt(engine.forCaller('uid:1001'), n)));
    await runAll();
    expect((await results).map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
    engine.close();
  });

  it('maxTransforms: idle transforms beyond it are closed', async () => {
    const engine = engineFor({ maxTransforms: 2 });
    const before = fake.transforms;
    for (const key of [1, 2, 3, 4]) {
      const done = encrypt(engine, `k${key}`, key);
      await runAll();
      await done;
    }
    expect(fake.transforms - before).toBe(4);
    expect(engine.openTransforms).toBe(2);
    // The oldest was closed: using it again keys a new transform.
    const again = encrypt(engine, 'k1', 1);
    await runAll();
    await again;
    expect(fake.transforms - before).toBe(5);
    engine.close();
  });
});
