/**
 * A real KeyManager over a node:crypto stand-in for the kernel engine, for host tests of the
 * operations and their handlers (answers.test.ts, stream-handlers.test.ts). The kernel's own answers
 * are tested in the guests. Keys: "k" (aes-256-gcm) and "m" (hmac-sha256). A key's destroyed kernel
 * keys are refused as the kernel refuses them (KEY_UNUSABLE, ENOKEY), and the context's engine
 * forgets them (CryptoEngine.forgetKey), as the daemon's material does.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DEFAULT_LIMITS } from '../config.js';
import { EngineError } from '../engine/errors.js';
import { MaterialFingerprints } from '../keys/fingerprints.js';
import { KeyManager } from '../keys/key-manager.js';
import { EMPTY_STATE } from '../keys/model.js';
import type { OpContext } from './context.js';
import { MemoryBudget } from '../api/memory-budget.js';

const keyBytes = new Map<number, Buffer>();
const destroyed = new Set<number>();
let nextSerial = 100;

/** A kernel key's bytes, or the engine's refusal of a key destroyed meanwhile (errors.ts fromKernel). */
function bytesOf(serial: number): Buffer {
  if (destroyed.has(serial)) throw new EngineError('KEY_UNUSABLE', `key ${serial}: the kernel key no longer exists`, { errno: 'ENOKEY' });
  return keyBytes.get(serial)!;
}

/** Set `fault` to make every seal throw it. */
export const standIn: { fault: Error | undefined } = { fault: undefined };

const engine = {
  forCaller: () => engine,
  async aeadEncrypt(_alg: unknown, serial: number, tag: number, iv: Buffer, aad: Buffer, pt: Buffer, headroom = 0) {
    if (standIn.fault) throw standIn.fault;
    const c = createCipheriv('aes-256-gcm', bytesOf(serial), iv, { authTagLength: tag });
    c.setAAD(aad);
    return Buffer.concat([Buffer.alloc(headroom), c.update(pt), c.final(), c.getAuthTag()]);
  },
  async aeadDecrypt(_alg: unknown, serial: number, tag: number, iv: Buffer, aad: Buffer, sealed: Buffer) {
    const d = createDecipheriv('aes-256-gcm', bytesOf(serial), iv, { authTagLength: tag });
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - tag));
    try {
      return Buffer.concat([d.update(sealed.subarray(0, sealed.length - tag)), d.final()]);
    } catch {
      throw new EngineError('AUTHENTICATION_FAILED', 'gcm(aes): authentication failed');
    }
  },
  async digest(alg: { name: string }, serial: number | undefined, n: number, data: Buffer) {
    if (serial === undefined) return createHash(alg.name).update(data).digest();
    return createHmac(alg.name.slice(5, -1), bytesOf(serial)).update(data).digest().subarray(0, n);
  },
  async verifyDigest(alg: { name: string }, serial: number, n: number, data: Buffer, mac: Buffer) {
    return timingSafeEqual(await engine.digest(alg, serial, n, data), mac);
  },
};

export async function standInContext(extra: Partial<OpContext> = {}): Promise<OpContext> {
  const material = {
    canSeal: false,
    generate: (_id: string, _v: number, suite: { keyBytes: number[] }) => {
      const serials = suite.keyBytes.map((b) => {
        const s = nextSerial++;
        keyBytes.set(s, randomBytes(b));
        return s;
      });
      return { serials, blobs: serials.map(String) };
    },
    destroy: (serials: readonly number[]) => {
      for (const s of serials) {
        destroyed.add(s);
        ((extra.engine ?? engine) as { forgetKey?: (serial: number) => void }).forgetKey?.(s);
      }
    },
  };
  const keys = new KeyManager({ material: material as never, fingerprints: new MaterialFingerprints({} as never, {} as never), persist: async () => {}, suiteStatus: () => 'available', limits: { minRotationPeriodMs: 1, minDeletionWaitingPeriodMs: 1 }, log: () => {} });
  await keys.open(EMPTY_STATE);
  await keys.create({ name: 'k', suite: 'aes-256-gcm' });
  await keys.create({ name: 'm', purpose: 'mac', suite: 'hmac-sha256' });
  return { keys, engine, limits: { ...DEFAULT_LIMITS }, suiteStatus: () => 'available', authorize: () => {}, budget: new MemoryBudget(1 << 30), hashStreamSlots: {} as never, ...extra } as unknown as OpContext;
}

/** Deletes key `name` as the daemon does once its waiting period is over: scheduled, then destroyed by the due work. */
export async function deleteKeyNow(ctx: OpContext, name: string): Promise<void> {
  await ctx.keys.scheduleDeletion(name, 1);
  await new Promise((r) => setTimeout(r, 5));
  const { deleted } = await ctx.keys.runDueWork();
  if (!deleted.includes(name)) throw new Error(`key ${name} was not deleted`);
}
