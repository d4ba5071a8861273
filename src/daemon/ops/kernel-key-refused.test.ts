/**
 * A key version ringfence still holds as usable whose kernel key the kernel refuses when a transform
 * is keyed with it (invalidated, revoked, expired, unlinked from the daemon's keyring: not by
 * ringfence), through the real CryptoEngine with AF_ALG faked. It answered INTERNAL /
 * KERNEL_ERROR "the kernel failed ..."; it answers FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE
 * naming the key and version, other keys unaffected, and the daemon keeps no socket nor transform
 * of the failed keying (review by helper-207).
 */
import { describe, expect, it, vi } from 'vitest';

// Keying by a serial in `refused` fails with its errno; every socket opened and closed is counted.
const fake = vi.hoisted(() => ({ refused: new Map<number, number>(), open: new Set<number>() }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const { SyscallError } = await import('../../../native-ffi/syscall-error.js');
  const base = (await import('../engine/fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<typeof import('../../../native-ffi/af-alg.js')>());
  const track = (fd: number) => (fake.open.add(fd), fd);
  return {
    ...base,
    openTransform: (...a: Parameters<typeof base.openTransform>) => track(base.openTransform(...a)),
    acceptOp: (...a: Parameters<typeof base.acceptOp>) => track(base.acceptOp(...a)),
    closeFd: (fd: number) => void fake.open.delete(fd),
    setKeyBySerial: (_fd: number, serial: number) => {
      const errno = fake.refused.get(serial);
      if (errno !== undefined) throw new SyscallError('setsockopt', errno, `ALG_SET_KEY_BY_KEY_SERIAL ${serial}`);
    },
  };
});

const { CryptoEngine } = await import('../engine/engine.js');
const { answer, KERNEL_KEY_REFUSAL_ERRNOS: ERRNOS } = await import('../api/answer.test-support.js');
const { standInContext } = await import('./stand-in.test-support.js');
const { encrypt } = await import('./encrypt.js');
const { decrypt } = await import('./decrypt.js');
const { computeMac, verifyMac } = await import('./mac.js');

const none = Buffer.alloc(0);
const req = (o: object) => o as never;
describe('a key version whose kernel key the kernel refuses, not by ringfence', () => {
  for (const [name, errno] of ERRNOS) {
    it(`${name}: Encrypt, Decrypt, ComputeMac and VerifyMac answer FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE naming key and version; other keys keep working`, async () => {
      fake.refused.clear();
      const engine = new CryptoEngine();
      const ctx = await standInContext({ engine: engine as never });
      const made = await encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('x'), associatedData: none }));
      const k = (await ctx.keys.forEncrypt('k')).serials;
      const m = ctx.keys.forMac('m').serials;
      for (const s of [...k, ...m]) fake.refused.set(s, errno);
      // A daemon whose transforms are not keyed yet (started since, or they were evicted).
      const fresh = { ...ctx, engine: new CryptoEngine() as never };
      const expected = (key: string) => ({
        code: 'FAILED_PRECONDITION',
        reason: 'KERNEL_KEY_UNUSABLE',
        metadata: { key_name: key, key_version: '1', errno: name },
        message: expect.stringMatching(new RegExp(`^key "${key}" version 1 cannot be used: .*\\(${name}[):].*ringfence did not disable or delete it; nothing was done\\. The operator restarts ringfenced, which loads every key version into the kernel again from its state directory`)),
      });
      expect(await answer(encrypt(fresh, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })))).toEqual(expected('k'));
      expect(await answer(decrypt(fresh, req({ ciphertext: made.ciphertext, associatedData: none })))).toEqual(expected('k'));
      expect(await answer(computeMac(fresh, req({ keyName: 'm', data: Buffer.from('d') })))).toEqual(expected('m'));
      expect(await answer(verifyMac(fresh, req({ keyName: 'm', data: Buffer.from('d'), mac: Buffer.alloc(32) })))).toEqual(expected('m'));
      // Another key's kernel key is untouched: it keeps working.
      await ctx.keys.create({ name: 'other', suite: 'aes-256-gcm' });
      expect(await answer(encrypt(fresh, req({ keyName: 'other', plaintext: Buffer.from('b'), associatedData: none })))).toEqual({ answered: true });
      engine.close();
      (fresh.engine as unknown as InstanceType<typeof CryptoEngine>).close();
    });
  }

  it('the failed keying leaves no socket and no transform behind, and once the kernel takes the serial again it is used', async () => {
    fake.refused.clear();
    const engine = new CryptoEngine();
    const ctx = await standInContext({ engine: engine as never });
    const serials = (await ctx.keys.forEncrypt('k')).serials;
    const before = fake.open.size;
    for (const s of serials) fake.refused.set(s, 13);
    for (let i = 0; i < 5; i++) {
      expect(await answer(encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })))).toMatchObject({ reason: 'KERNEL_KEY_UNUSABLE' });
    }
    expect(fake.open.size).toBe(before);
    expect(engine.openTransforms).toBe(0);
    // E.g. a security module's policy fixed: nothing of the failures is cached.
    fake.refused.clear();
    expect(await answer(encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })))).toEqual({ answered: true });
    expect(engine.openTransforms).toBe(1);
    engine.close();
    expect(fake.open.size).toBe(before);
  });

  it('a key disabled meanwhile still answers KEY_DISABLED: what its state says comes first (deleted ones: deleted-key-queue.test.ts)', async () => {
    fake.refused.clear();
    const ctx = await standInContext({ engine: new CryptoEngine() as never });
    for (const s of (await ctx.keys.forEncrypt('k')).serials) fake.refused.set(s, 128);
    // Disabled between resolving the key and the kernel's answer: the recheck finds it.
    const held = { ...ctx, keys: Object.assign(Object.create(ctx.keys) as typeof ctx.keys, { forEncrypt: async (n: string) => {
      const r = await ctx.keys.forEncrypt(n);
      await ctx.keys.setEnabled(n, false);
      return r;
    } }) };
    expect(await answer(encrypt(held as never, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })))).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'KEY_DISABLED' });
  });
});
