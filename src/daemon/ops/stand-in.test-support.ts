/**
 * A real KeyManager over a node:crypto stand-in for the kernel engine, for host tests of the
 * operations and their handlers (answers.test.ts, stream-handlers.test.ts). The kernel's own answers
 * are tested in the guests. Keys: "k" (aes-256-gcm) and "m" (hmac-sha256).
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
let nextSerial = 100;

/** Set `fault` to make every seal throw it. */
export const standIn: { fault: Error | undefined } = { fault: undefined };

const engine = {
  forCaller: () => engine,
  async aeadEncrypt(_alg: unknown, serial: number, tag: number, iv: Buffer, aad: Buffer, pt: Buffer, headroom = 0) {
    if (standIn.fault) throw standIn.fault;
    const c = createCipheriv('aes-256-gcm', keyBytes.get(serial)!, iv, { authTagLength: tag });
    c.setAAD(aad);
    return Buffer.concat([Buffer.alloc(headroom), c.update(pt), c.final(), c.getAuthTag()]);
  },
  async aeadDecrypt(_alg: unknown, serial: number, tag: number, iv: Buffer, aad: Buffer, sealed: Buffer) {
    const d = createDecipheriv('aes-256-gcm', keyBytes.get(serial)!, iv, { authTagLength: tag });
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
    return createHmac(alg.name.slice(5, -1), keyBytes.get(serial)!).update(data).digest().subarray(0, n);
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
    destroy: () => {},
  };
  const keys = new KeyManager({ material: material as never, fingerprints: new MaterialFingerprints({} as never, {} as never), persist: async () => {}, suiteStatus: () => 'available', limits: { minRotationPeriodMs: 1, minDeletionWaitingPeriodMs: 1 }, log: () => {} });
  await keys.open(EMPTY_STATE);
  await keys.create({ name: 'k', suite: 'aes-256-gcm' });
  await keys.create({ name: 'm', purpose: 'mac', suite: 'hmac-sha256' });
  return { keys, engine, limits: { ...DEFAULT_LIMITS }, suiteStatus: () => 'available', authorize: () => {}, budget: new MemoryBudget(1 << 30), hashStreamSlots: {} as never, ...extra } as unknown as OpContext;
}
