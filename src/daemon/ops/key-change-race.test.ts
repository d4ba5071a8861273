/**
 * A key change acknowledged while the kernel works on a request holds for that request's answer.
 * A large seal waits on the libuv pool (or for one of the key's op sockets), and the key's state was
 * checked only before it: an Encrypt answered a version-1 ciphertext after RotateKey +
 * UpdateKey(min_decryption_version 2) were acknowledged, which nothing could decrypt, and a
 * disabled key still encrypted (review by helper-149). The stand-in engine is held between the
 * request reaching it and its answer, while the change is made and acknowledged.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Drain } from '../api/drain.js';
import { ErrorReason, toApiError } from '../api/errors.js';
import { EngineError } from '../engine/errors.js';
import type { OpContext } from './context.js';
import { decrypt } from './decrypt.js';
import { encrypt } from './encrypt.js';
import { generateDataKey } from './generate-data-key.js';
import { computeMac, verifyMac } from './mac.js';
import { reEncrypt } from './reencrypt.js';
import { deleteKeyNow, standIn, standInContext } from './stand-in.test-support.js';

type EngineFn = (...a: unknown[]) => Promise<Buffer>;

/** The context with `method` of its engine held: `reached` once a request is in it, `release()` lets it answer. */
function hold(ctx: OpContext, method: 'aeadEncrypt' | 'aeadDecrypt' | 'digest' | 'verifyDigest') {
  const real = ctx.engine as unknown as Record<string, EngineFn>;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  const inputs: unknown[][] = [];
  const outputs: Buffer[] = [];
  const engine = {
    ...real,
    [method]: async (...a: unknown[]) => {
      inputs.push(a);
      reach();
      await released;
      const out = await real[method]!(...a);
      outputs.push(out);
      return out;
    },
  };
  return { ctx: { ...ctx, engine } as unknown as OpContext, reached, release, inputs, outputs };
}

const req = (o: object) => o as never;
/** The gRPC code and reason a call failed with (it must fail). */
const refusal = (p: Promise<unknown>) =>
  p.then(
    () => ({ answered: true }),
    (e: { code?: number; reasonName?: string }) => ({ code: e.code, reason: e.reasonName }),
  );
const none = Buffer.alloc(0);

const changes: [string, (ctx: OpContext, name: string) => Promise<unknown>, string][] = [
  ['DisableKey', (ctx, name) => ctx.keys.setEnabled(name, false), 'KEY_DISABLED'],
  ['ScheduleKeyDeletion', (ctx, name) => ctx.keys.scheduleDeletion(name, 86_400_000), 'KEY_PENDING_DELETION'],
  ['RotateKey + UpdateKey(min_decryption_version 2)', async (ctx, name) => {
    await ctx.keys.rotate(name);
    await ctx.keys.update(name, { minDecryptionVersion: 2 });
  }, 'KEY_VERSION_DISABLED'],
];

describe('a key change acknowledged while the kernel seals', () => {
  for (const [what, change, reason] of changes) {
    it(`${what}: Encrypt and GenerateDataKey answer FAILED_PRECONDITION ${reason}, the data key wiped`, async () => {
      const base = await standInContext();
      const h = hold(base, 'aeadEncrypt');
      const encrypting = encrypt(h.ctx, req({ keyName: 'k', plaintext: Buffer.from('late'), associatedData: none }));
      const generating = generateDataKey(h.ctx, req({ keyName: 'k', lengthBytes: 32, associatedData: none }));
      await h.reached;
      await change(base, 'k');
      h.release();
      expect(await refusal(encrypting)).toEqual({ code: 9, reason: reason });
      expect(await refusal(generating)).toEqual({ code: 9, reason: reason });
      const dataKey = h.inputs[1]![5] as Buffer; // aeadEncrypt(alg, serial, tag, iv, aad, plaintext, headroom)
      expect(dataKey).toHaveLength(32);
      expect(dataKey.equals(Buffer.alloc(32))).toBe(true);
    });
  }

  it('RotateKey alone: the version-1 ciphertext is answered, and decrypts (the old version still may)', async () => {
    const base = await standInContext();
    const h = hold(base, 'aeadEncrypt');
    const encrypting = encrypt(h.ctx, req({ keyName: 'k', plaintext: Buffer.from('late'), associatedData: none }));
    await h.reached;
    await base.keys.rotate('k');
    h.release();
    const out = await encrypting;
    expect(out.keyVersion).toBe(1);
    expect(Buffer.from((await decrypt(base, req({ ciphertext: out.ciphertext, associatedData: none }))).plaintext!).toString()).toBe('late');
  });

  /** ReEncrypt of a ciphertext of 'k' to 'dest', with `change` acknowledged while the destination seals. */
  async function reEncryptWhileSealing(change: (base: Awaited<ReturnType<typeof standInContext>>) => Promise<unknown>) {
    const base = await standInContext();
    await base.keys.create({ name: 'dest', suite: 'aes-256-gcm' });
    const source = await encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('moved'), associatedData: none }));
    const h = hold(base, 'aeadEncrypt');
    const moving = reEncrypt(h.ctx, req({ ciphertext: source.ciphertext, destinationKeyName: 'dest', associatedData: none }));
    await h.reached;
    await change(base);
    h.release();
    return refusal(moving);
  }

  it('ReEncrypt to a key disabled meanwhile: FAILED_PRECONDITION, nothing answered', async () => {
    expect(await reEncryptWhileSealing((base) => base.keys.setEnabled('dest', false))).toEqual({ code: 9, reason: 'KEY_DISABLED' });
  });

  for (const [what, change, reason] of changes) {
    it(`ReEncrypt from a key given ${what} while the destination seals: FAILED_PRECONDITION ${reason}, nothing answered`, async () => {
      expect(await reEncryptWhileSealing((base) => change(base, 'k'))).toEqual({ code: 9, reason });
    });
  }
});

describe('a key change acknowledged while the kernel opens', () => {
  for (const [what, change, reason] of changes) {
    it(`${what}: Decrypt answers FAILED_PRECONDITION ${reason}, the plaintext wiped`, async () => {
      const base = await standInContext();
      const made = await encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('secret text'), associatedData: none }));
      const h = hold(base, 'aeadDecrypt');
      const decrypting = decrypt(h.ctx, req({ ciphertext: made.ciphertext, associatedData: none }));
      await h.reached;
      await change(base, 'k');
      h.release();
      expect(await refusal(decrypting)).toEqual({ code: 9, reason: reason });
      expect(h.outputs[0]!.equals(Buffer.alloc('secret text'.length))).toBe(true);
    });
  }
});

describe('a key change acknowledged while the kernel computes a MAC', () => {
  for (const [what, change, reason] of changes) {
    it(`${what}: ComputeMac and VerifyMac answer FAILED_PRECONDITION ${reason}`, async () => {
      const base = await standInContext();
      const tag = await computeMac(base, req({ keyName: 'm', data: Buffer.from('d') }));
      const c = hold(base, 'digest');
      const v = hold(base, 'verifyDigest');
      const computing = computeMac(c.ctx, req({ keyName: 'm', data: Buffer.from('d') }));
      const verifying = verifyMac(v.ctx, req({ keyName: 'm', data: Buffer.from('d'), mac: tag.mac, keyVersion: 1 }));
      await Promise.all([c.reached, v.reached]);
      await change(base, 'm');
      c.release();
      v.release();
      expect(await refusal(computing)).toEqual({ code: 9, reason: reason });
      expect(await refusal(verifying)).toEqual({ code: 9, reason: reason });
    });
  }
});

/**
 * A key deleted (its waiting period over) while one of its requests waited for the kernel: the
 * kernel key is gone, so the kernel refuses the request (ENOKEY when its transform is keyed again,
 * or the transform closed under it). That answered INTERNAL / KERNEL_ERROR; it answers what the
 * request would have got a moment later: NOT_FOUND (review by helper-197).
 */
describe('a key deleted while the kernel works on its request', () => {
  /** The gRPC answer a call failed with (it must fail). */
  const answer = (p: Promise<unknown>) =>
    p.then(
      () => ({ answered: true }),
      (err: unknown) => {
        const e = toApiError(err);
        return { code: grpc.status[e.code], reason: ErrorReason[e.reason], message: e.message, metadata: e.metadata };
      },
    );
  const named = (name: string) => ({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', message: `key "${name}" does not exist`, metadata: { key_name: name } });

  it('Encrypt and GenerateDataKey: NOT_FOUND naming the key, not INTERNAL; the data key wiped', async () => {
    const base = await standInContext();
    const h = hold(base, 'aeadEncrypt');
    const encrypting = answer(encrypt(h.ctx, req({ keyName: 'k', plaintext: Buffer.from('late'), associatedData: none })));
    const generating = answer(generateDataKey(h.ctx, req({ keyName: 'k', lengthBytes: 32, associatedData: none })));
    await h.reached;
    await deleteKeyNow(base, 'k');
    h.release();
    expect(await encrypting).toEqual(named('k'));
    expect(await generating).toEqual(named('k'));
    expect((h.inputs[1]![5] as Buffer).equals(Buffer.alloc(32))).toBe(true);
  });

  it('Decrypt: NOT_FOUND by the key id the ciphertext names (no more than a later Decrypt is told)', async () => {
    const base = await standInContext();
    const made = await encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('secret text'), associatedData: none }));
    const id = base.keys.get('k').id;
    const h = hold(base, 'aeadDecrypt');
    const decrypting = answer(decrypt(h.ctx, req({ ciphertext: made.ciphertext, associatedData: none })));
    await h.reached;
    await deleteKeyNow(base, 'k');
    h.release();
    const late = await answer(decrypt(base, req({ ciphertext: made.ciphertext, associatedData: none })));
    expect(late).toMatchObject({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', metadata: { key_id: id } });
    expect(await decrypting).toEqual(late);
  });

  it('ReEncrypt: its destination deleted while sealing, or its source while opening: NOT_FOUND', async () => {
    const base = await standInContext();
    await base.keys.create({ name: 'dest', suite: 'aes-256-gcm' });
    const source = await encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('moved'), associatedData: none }));
    const sourceId = base.keys.get('k').id;
    const sealing = hold(base, 'aeadEncrypt');
    const moving = answer(reEncrypt(sealing.ctx, req({ ciphertext: source.ciphertext, destinationKeyName: 'dest', associatedData: none })));
    await sealing.reached;
    await deleteKeyNow(base, 'dest');
    sealing.release();
    expect(await moving).toEqual(named('dest'));

    const opening = hold(base, 'aeadDecrypt');
    const movingBack = answer(reEncrypt(opening.ctx, req({ ciphertext: source.ciphertext, associatedData: none })));
    await opening.reached;
    await deleteKeyNow(base, 'k');
    opening.release();
    expect(await movingBack).toMatchObject({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', metadata: { key_id: sourceId } });
  });

  it('ComputeMac and VerifyMac: NOT_FOUND naming the key', async () => {
    const base = await standInContext();
    const tag = await computeMac(base, req({ keyName: 'm', data: Buffer.from('d') }));
    const c = hold(base, 'digest');
    const v = hold(base, 'verifyDigest');
    const computing = answer(computeMac(c.ctx, req({ keyName: 'm', data: Buffer.from('d') })));
    const verifying = answer(verifyMac(v.ctx, req({ keyName: 'm', data: Buffer.from('d'), mac: tag.mac, keyVersion: 1 })));
    await Promise.all([c.reached, v.reached]);
    await deleteKeyNow(base, 'm');
    c.release();
    v.release();
    expect(await computing).toEqual(named('m'));
    expect(await verifying).toEqual(named('m'));
  });

  it('once the daemon\'s stop has begun: UNAVAILABLE / SHUTTING_DOWN, not NOT_FOUND (a forced stop closes the keys; they are not gone)', async () => {
    const drain = new Drain();
    const base = await standInContext({ drain });
    const h = hold(base, 'aeadEncrypt');
    const encrypting = answer(encrypt(h.ctx, req({ keyName: 'k', plaintext: Buffer.from('late'), associatedData: none })));
    await h.reached;
    drain.start();
    base.keys.close();
    standIn.fault = new EngineError('KEY_UNUSABLE', 'transform closed');
    try {
      h.release();
      expect(await encrypting).toMatchObject({ code: 'UNAVAILABLE', reason: 'SHUTTING_DOWN' });
    } finally {
      standIn.fault = undefined;
    }
  });

  it('once the daemon\'s stop has begun, a failure no closed key causes keeps its code: an altered ciphertext is INVALID_ARGUMENT, not a retryable SHUTTING_DOWN', async () => {
    const drain = new Drain();
    const base = await standInContext({ drain });
    const made = await encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('secret text'), associatedData: none }));
    const altered = Buffer.from(made.ciphertext as Uint8Array);
    altered[altered.length - 1]! ^= 1;
    // Requests read before the drain are still answered during it (sessions answer what they read).
    drain.start();
    expect(await answer(decrypt(base, req({ ciphertext: altered, associatedData: none })))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'AUTHENTICATION_FAILED' });
  });

  it('a key that is still there keeps what the kernel said: the recheck changes only what a change made meanwhile explains', async () => {
    const base = await standInContext();
    // Its kernel key refused though ringfence still holds it: the operator's to fix (review by helper-207).
    standIn.fault = new EngineError('KEY_UNUSABLE', 'key 100: the kernel key was revoked', { errno: 'EKEYREVOKED' });
    try {
      expect(await answer(encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('x'), associatedData: none })))).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'KERNEL_KEY_UNUSABLE', metadata: { key_name: 'k', key_version: '1', errno: 'EKEYREVOKED' } });
      // A transform closed under a request whose key is still there is no kernel refusal: still INTERNAL.
      standIn.fault = new EngineError('KEY_UNUSABLE', 'gcm(aes) with key 100: transform closed');
      expect(await answer(encrypt(base, req({ keyName: 'k', plaintext: Buffer.from('x'), associatedData: none })))).toMatchObject({ code: 'INTERNAL', reason: 'KERNEL_ERROR' });
    } finally {
      standIn.fault = undefined;
    }
  });
});
