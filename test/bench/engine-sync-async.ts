/**
 * Measures the engine's sync/async threshold: the same AEAD requests run synchronously (koffi sync
 * calls on the main thread) and on the libuv pool (koffi async), one at a time and 8 in flight, with
 * in-process node:crypto as a same-run baseline. Prints numbers and ratios; asserts nothing.
 * Run in the VM: npm run vm -- npx tsx test/bench/engine-sync-async.ts
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { probeCapabilities } from '../../src/capabilities/probe.js';
import { aeadSuite } from '../../src/capabilities/suites.js';
import { CryptoEngine } from '../../src/daemon/engine/engine.js';
import { seal } from '../../src/daemon/engine/suite-ops.js';
import { KernelKeystore } from '../../src/daemon/keystore/kernel-keystore.js';

const SIZES = [64, 1024, 4096, 16384, 65536, 262144, 1048576];
const BUDGET_MS = Number(process.env.BENCH_MS ?? 1500);

const probe = probeCapabilities();
const suite = aeadSuite(probe.defaultAeadSuite ?? 'aes-256-ccm')!;
const store = new KernelKeystore({ keyringName: `rf-bench-${process.pid}` });
const key = randomBytes(32);
const serial = store.importRaw('ringfence:bench', Buffer.from(key));

async function run(engine: CryptoEngine, size: number, inFlight: number): Promise<{ ops: number; p50: number; maxMs: number }> {
  const pt = randomBytes(size);
  const aad = Buffer.alloc(0);
  const lat: number[] = [];
  const end = performance.now() + BUDGET_MS;
  let n = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await seal(engine, suite, [serial], randomBytes(12), aad, pt);
        lat.push(performance.now() - t);
        n++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  // For sync requests the latency is also how long the event loop was blocked.
  return { ops: n / (BUDGET_MS / 1000), p50: lat[Math.floor(lat.length / 2)]! * 1000, maxMs: lat[lat.length - 1]! };
}

function nodeBaseline(size: number): number {
  const pt = randomBytes(size);
  const end = performance.now() + BUDGET_MS;
  let n = 0;
  const alg = suite.name === 'aes-256-gcm' ? 'aes-256-gcm' : 'aes-256-ccm';
  while (performance.now() < end) {
    const c = createCipheriv(alg as 'aes-256-gcm', key, randomBytes(12), { authTagLength: 16 });
    if (alg === 'aes-256-ccm') (c as unknown as { setAAD(b: Buffer, o: object): void }).setAAD(Buffer.alloc(0), { plaintextLength: size });
    c.update(pt);
    c.final();
    n++;
  }
  return n / (BUDGET_MS / 1000);
}

const sync = new CryptoEngine({ asyncThresholdBytes: Number.MAX_SAFE_INTEGER });
const pool = new CryptoEngine({ asyncThresholdBytes: 0 });
console.log(`suite ${suite.name}, kernel ${probe.kernel.release}, ${BUDGET_MS} ms per cell, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}`);
console.log('size      | sync ops/s  p50 us (loop blocked) max ms | async ops/s p50 us | async x8 ops/s | node:crypto ops/s | async/sync  async8/sync');
for (const size of SIZES) {
  const s = await run(sync, size, 1);
  const a = await run(pool, size, 1);
  const a8 = await run(pool, size, 8);
  const base = nodeBaseline(size);
  const f = (x: number) => x.toFixed(0).padStart(10);
  console.log(
    `${String(size).padEnd(9)} | ${f(s.ops)} ${f(s.p50)} ${s.maxMs.toFixed(2).padStart(8)} | ${f(a.ops)} ${f(a.p50)} | ${f(a8.ops)} | ${f(base)} | ${(a.ops / s.ops).toFixed(2).padStart(6)} ${(a8.ops / s.ops).toFixed(2).padStart(8)}`,
  );
}
sync.close();
pool.close();
store.close();
