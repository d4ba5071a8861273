/**
 * A key change acknowledged while the kernel works on a request holds for that request's answer.
 * A large seal waits on the libuv pool (or for one of the key's op sockets), and the key's state was
 * checked only before it: an Encrypt answered a version-1 ciphertext after RotateKey +
 * UpdateKey(min_decryption_version 2) were acknowledged, which nothing could decrypt, and a
 * disabled key still encrypted (review by helper-149). The stand-in engine is held between the
 * request reaching it and its answer, while the change is made and acknowledged.
 */
import { describe, expect, it } from 'vitest';
import type { OpContext } from './context.js';
import { decrypt } from './decrypt.js';
import { encrypt } from './encrypt.js';
import { generateDataKey } from './generate-data-key.js';
import { computeMac, verifyMac } from './mac.js';
import { reEncrypt } from './reencrypt.js';
import { standInContext } from './stand-in.test-support.js';

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
