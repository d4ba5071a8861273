/**
 * Load: 64 SDK clients, each on its own channel and connection, run mixed operations (encrypt,
 * decrypt, mac, verify, hash, random, reencrypt, datakey) against one daemon for a fixed time
 * (RINGFENCE_LOAD_SECONDS, default 60). Asserted: no call fails and every result is right (digests
 * against node:crypto, round trips, MAC verdicts), the daemon's audit trail has one OK line per
 * call, and the daemon's RSS (sampled from /proc) grows by less than RSS_GROWTH_BOUND. Latency
 * (p50/p99) and ops/s are printed for docs/benchmarks.md, never asserted: TCG speed says nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingfenceClient, type HashAlgorithmName, type SuiteName } from '../../src/client/sdk/index.js';
import { currentKernel, suiteExpectedAvailable } from '../support/kernel-matrix.js';
import { TestDaemon } from '../support/daemon.js';
import { until } from '../support/wait.js';

const CLIENTS = 64;
const SECONDS = Number(process.env.RINGFENCE_LOAD_SECONDS ?? 60);
// Peak daemon RSS over its idle baseline. 64 connections with an HTTP/2 session each and at most 64
// small calls in flight need a few tens of MiB; a leak per call (tens of thousands of calls) or
// unbounded buffering would exceed this.
const RSS_GROWTH_BOUND = 128 * 2 ** 20;
const PAYLOAD_BYTES = 256;

const AEAD_SUITES = (['aes-256-gcm', 'chacha20-poly1305', 'aes-256-ccm', 'aes-256-ctr-hmac-sha256'] as SuiteName[]).filter(suiteExpectedAvailable);
const MAC_SUITES: SuiteName[] = ['hmac-sha256', 'hmac-sha512'];
// node:crypto names for the independent digest.
const HASHES = ([['sha256', 'sha256'], ['sha512', 'sha512'], ['sha3-256', 'sha3-256'], ['blake2b-512', 'blake2b512']] as [HashAlgorithmName, string][]).filter(([h]) =>
  suiteExpectedAvailable(h),
);
const OPS = ['encrypt', 'decrypt', 'mac', 'verify', 'hash', 'random', 'reencrypt', 'datakey'] as const;
type Op = (typeof OPS)[number];

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Sockets the daemon holds open (its connections plus the listener). */
function socketFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}


const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

interface Maced {
  key: string;
  data: Buffer;
  mac: Uint8Array;
}

interface Sealed {
  key: string;
  ciphertext: Uint8Array;
  plaintext: Buffer;
  ad: Buffer;
}

describe(`load: ${CLIENTS} clients for ${SECONDS} s`, () => {
  let daemon: TestDaemon;
  const clients: RingfenceClient[] = [];

  beforeAll(async () => {
    daemon = await TestDaemon.start({ readyTimeoutMs: 120_000 });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    expect(await daemon?.stop()).toBe(0);
  });

  it('mixed operations: no errors, right results, bounded RSS', async () => {
    expect(SECONDS).toBeGreaterThan(0);
    const admin = new RingfenceClient({ socketPath: daemon.socket, defaultTimeoutMs: 60_000 });
    const aeadKeys: string[] = [];
    const macKeys: string[] = [];
    // v1 ciphertexts made before every AEAD key is rotated: reencrypt moves them to v2.
    const v1: Sealed[] = [];
    const macs: Maced[] = []; // one per MAC key, for a client's first verify
    try {
      for (const suite of AEAD_SUITES) {
        const key = `load-${suite}`;
        await admin.createKey(key, { suite });
        aeadKeys.push(key);
        for (let i = 0; i < 2; i++) {
          const plaintext = randomBytes(PAYLOAD_BYTES);
          const ad = Buffer.from(`v1-${i}`);
          v1.push({ key, ciphertext: (await admin.encrypt(key, plaintext, { associatedData: ad })).ciphertext, plaintext, ad });
        }
        expect((await admin.rotateKey(key)).primaryVersion).toBe(2);
      }
      for (const suite of MAC_SUITES) {
        const key = `load-${suite}`;
        await admin.createKey(key, { purpose: 'mac', suite });
        macKeys.push(key);
        const data = randomBytes(PAYLOAD_BYTES);
        macs.push({ key, data, mac: (await admin.computeMac(key, data)).mac });
      }
    } finally {
      await admin.close();
    }

    const pid = daemon.pid!;
    // Baseline: the idle daemon with its keys, before the 64 connections.
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 250);
    const connectStart = performance.now();
    // grpc-js shares one connection among channels to the same target unless each has a local pool.
    for (let i = 0; i < CLIENTS; i++) {
      clients.push(new RingfenceClient({ socketPath: daemon.socket, defaultTimeoutMs: 60_000, grpcOptions: { 'grpc.use_local_subchannel_pool': 1 } }));
    }
    await Promise.all(clients.map((c) => c.getStatus())); // connect them all before the clock starts
    // One connection each, plus the listener (one shared connection would leave a handful of sockets).
    expect(socketFds(pid)).toBeGreaterThanOrEqual(CLIENTS + 1);

    const connectSeconds = (performance.now() - connectStart) / 1000;
    // The daemon's audit lines reach us through a pipe, maybe late: wait for the set-up encryptions'.
    const cryptoAudit = () => daemon.auditLines().filter((l) => String(l.rpc).startsWith('CryptoService/'));
    const setupCalls = v1.length + macs.length;
    await until('the set-up audit lines', () => cryptoAudit().length >= setupCalls, 60_000);
    expect(cryptoAudit().length).toBe(setupCalls);

    const latencies = Object.fromEntries(OPS.map((op) => [op, [] as number[]])) as Record<Op, number[]>;
    const perClient = new Array<number>(CLIENTS).fill(0);
    const errors: string[] = [];
    let wrong = 0;
    let failed = 0;
    const check = (ok: boolean, what: string) => {
      if (!ok) {
        wrong++;
        if (errors.length < 20) errors.push(`wrong result: ${what}`);
      }
    };

    const runClient = async (client: RingfenceClient, c: number, deadline: number) => {
      let sealed: Sealed = v1[c % v1.length]!;
      let macd: Maced = macs[c % macs.length]!;
      for (let k = 0; performance.now() < deadline; k++) {
        const op = OPS[(c + k) % OPS.length]!;
        const aead = aeadKeys[(c + k) % aeadKeys.length]!;
        const macKey = macKeys[(c + k) % macKeys.length]!;
        const t0 = performance.now();
        try {
          switch (op) {
            case 'encrypt': {
              const plaintext = randomBytes(PAYLOAD_BYTES);
              const ad = Buffer.from(`c${c}k${k}`);
              const r = await client.encrypt(aead, plaintext, { associatedData: ad });
              check(r.keyVersion === 2, `encrypt under ${aead} v${r.keyVersion}`);
              sealed = { key: aead, ciphertext: r.ciphertext, plaintext, ad };
              break;
            }
            case 'decrypt': {
              const r = await client.decrypt(sealed.ciphertext, { associatedData: sealed.ad });
              check(sameBytes(r.plaintext, sealed.plaintext) && r.keyName === sealed.key, `decrypt ${sealed.key}`);
              break;
            }
            case 'mac': {
              const data = randomBytes(PAYLOAD_BYTES);
              const r = await client.computeMac(macKey, data);
              macd = { key: macKey, data, mac: r.mac };
              break;
            }
            case 'verify': {
              // Every other verify gets a flipped MAC, which must come back invalid (not an error).
              const tamper = k % 2 === 1;
              const mac = Buffer.from(macd.mac);
              if (tamper) mac[0]! ^= 1;
              const r = await client.verifyMac(macd.key, macd.data, mac);
              check(r.valid === !tamper, `verify ${macd.key} tampered=${tamper} valid=${r.valid}`);
              break;
            }
            case 'hash': {
              const [alg, nodeName] = HASHES[(c + k) % HASHES.length]!;
              const data = randomBytes(PAYLOAD_BYTES);
              const r = await client.hash(data, alg);
              check(sameBytes(r.digest, createHash(nodeName).update(data).digest()), `hash ${alg}`);
              break;
            }
            case 'random': {
              const r = await client.generateRandom(32);
              check(r.data.length === 32, `random ${r.data.length} bytes`);
              break;
            }
            case 'reencrypt': {
              const from = v1[(c + k) % v1.length]!;
              const r = await client.reEncrypt(from.ciphertext, { associatedData: from.ad });
              check(r.sourceKeyVersion === 1 && r.keyVersion === 2 && r.keyName === from.key, `reencrypt ${from.key} v${r.sourceKeyVersion}->v${r.keyVersion}`);
              sealed = { ...from, ciphertext: r.ciphertext }; // the next decrypt checks it
              break;
            }
            case 'datakey': {
              const r = await client.generateDataKey(aead);
              check(r.plaintext.length === 32 && r.ciphertext.length > 32 && r.keyVersion === 2, `datakey ${aead}`);
              break;
            }
          }
          latencies[op].push(performance.now() - t0);
          perClient[c]!++;
        } catch (err) {
          if (errors.length < 20) errors.push(`${op}: ${String(err)}`);
          latencies[op].push(performance.now() - t0);
          failed++;
        }
      }
    };

    const start = performance.now();
    const deadline = start + SECONDS * 1000;
    let socketsDuring = 0;
    const midway = setTimeout(() => (socketsDuring = socketFds(pid)), (SECONDS * 1000) / 2);
    try {
      await Promise.all(clients.map((client, c) => runClient(client, c, deadline)));
    } finally {
      clearInterval(sampler);
      clearTimeout(midway);
    }
    const elapsed = (performance.now() - start) / 1000;
    peak = Math.max(peak, rssBytes(pid));
    const end = rssBytes(pid);

    const all = OPS.flatMap((op) => latencies[op]).sort((a, b) => a - b);
    const total = all.length;
    const perOp = Object.fromEntries(
      OPS.map((op) => {
        const s = [...latencies[op]].sort((a, b) => a - b);
        return [op, { n: s.length, p50: +quantile(s, 0.5).toFixed(1), p99: +quantile(s, 0.99).toFixed(1) }];
      }),
    );
    const mib = (b: number) => +(b / 2 ** 20).toFixed(1);
    const result = {
      kernel: currentKernel(),
      release: process.env.RINGFENCE_KERNEL_RELEASE,
      clients: CLIENTS,
      connectSeconds: +connectSeconds.toFixed(1),
      opsPerClient: { min: Math.min(...perClient), max: Math.max(...perClient) },
      seconds: +elapsed.toFixed(1),
      ops: total,
      opsPerSecond: +(total / elapsed).toFixed(1),
      p50Ms: +quantile(all, 0.5).toFixed(1),
      p99Ms: +quantile(all, 0.99).toFixed(1),
      maxMs: +(all[all.length - 1] ?? NaN).toFixed(1),
      rssMiB: { baseline: mib(baseline), peak: mib(peak), end: mib(end), growth: mib(peak - baseline) },
      daemonSocketsMidway: socketsDuring,
      aeadSuites: AEAD_SUITES,
      hashes: HASHES.map(([h]) => h),
      perOp,
      failed,
      wrong,
    };
    console.log(`LOAD-RESULT ${JSON.stringify(result)}`);
    console.log(
      `load (${result.kernel}): ${CLIENTS} clients, ${total} ops in ${result.seconds} s = ${result.opsPerSecond} ops/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms; daemon RSS ${result.rssMiB.baseline} -> peak ${result.rssMiB.peak} MiB (end ${result.rssMiB.end})`,
    );

    expect(errors).toEqual([]);
    expect(failed).toBe(0);
    expect(wrong).toBe(0);
    // The mix really ran: every kind of operation, and every client got calls through (under TCG
    // each client completes only a handful in 60 s, so not every client does every kind).
    for (const op of OPS) expect(latencies[op].length, op).toBeGreaterThan(0);
    expect(Math.min(...perClient)).toBeGreaterThan(0);
    expect(socketsDuring).toBeGreaterThanOrEqual(CLIENTS + 1); // still 64 connections midway
    // The daemon's own account: one audit line per call, all OK.
    await until('the audit lines of the load', () => cryptoAudit().length >= setupCalls + total, 60_000).catch(() => undefined);
    const audit = cryptoAudit().slice(setupCalls);
    expect(audit.length).toBe(total);
    expect(audit.filter((l) => l.outcome !== 'OK')).toEqual([]);
    expect(peak - baseline).toBeLessThan(RSS_GROWTH_BOUND);
  }, (SECONDS + 180) * 1000);
});
