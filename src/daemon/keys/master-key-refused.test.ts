/**
 * The daemon's master key refused by the kernel while the daemon runs (invalidated, revoked,
 * expired, unlinked from its keyring, or denied by a security module; review by helper-210).
 * CreateKey, ImportKey, RotateKey, a scheduled rotation and a rotation at the encryption limit
 * answered INTERNAL / KERNEL_ERROR ("the master key is not in the daemon keyring"); they answer
 * FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE with `kernel_key` "master", leave nothing in the state
 * or the kernel, and scheduled rotations back off. Generated keys run against the host's real
 * keyrings (the master key invalidated or unlinked as code in the daemon could); sealing imported
 * material runs through the real CryptoEngine with AF_ALG faked, keying by the master key's serial
 * refused with each errno.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';

// Keying by a serial in `refused` fails with its errno.
const fake = vi.hoisted(() => ({ refused: new Map<number, number>() }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const { SyscallError } = await import('../../../native-ffi/syscall-error.js');
  const base = (await import('../engine/fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<typeof import('../../../native-ffi/af-alg.js')>());
  return {
    ...base,
    setKeyBySerial: (_fd: number, serial: number) => {
      const errno = fake.refused.get(serial);
      if (errno !== undefined) throw new SyscallError('setsockopt', errno, `ALG_SET_KEY_BY_KEY_SERIAL ${serial}`);
    },
  };
});

const keyctl = await import('../../../native-ffi/keyctl.js');
const { aeadSuite } = await import('../../capabilities/suites.js');
const { toApiError } = await import('../api/errors.js');
const { answer, KERNEL_KEY_REFUSAL_ERRNOS: ERRNOS } = await import('../api/answer.test-support.js');
const { DueWorkFailed } = await import('./due-work-scheduler.js');
const { HOUR, SECOND, disposeWorlds, world } = await import('./key-manager.test-support.js');
type World = Awaited<ReturnType<typeof world>>;

afterEach(() => {
  fake.refused.clear();
  return disposeWorlds();
});

const refusedAnswer = (errno: string) => ({
  code: 'FAILED_PRECONDITION',
  reason: 'KERNEL_KEY_UNUSABLE',
  metadata: { kernel_key: 'master', errno },
  message: expect.stringMatching(
    new RegExp(`^the daemon's master key, which wraps every key it saves, cannot be used: .*\\(${errno}[):].*ringfence did not remove it; nothing was done .*restarts ringfenced, which loads the master key into the kernel again from its credential or state directory \\(master\\.key\\)`),
  ),
});

/** What must not change when the master key refuses: the state file, and the kernel keys in the daemon's keyring. */
function snapshot(w: World) {
  return { file: w.fileText(), kernel: [...w.kernelKeys().keys()].sort() };
}

describe('the master key refused when sealing imported material (AF_ALG keyed by its serial)', () => {
  const sealing = (w: World) => (w.sealWith = aeadSuite('aes-256-ccm'));
  /** The master key refused with `errno` from now on; its transform keyed at start-up is closed, as an eviction would. */
  const refuse = (w: World, errno: number) => {
    fake.refused.set(w.keystore.masterKeySerial, errno);
    w.engine.forgetKey(w.keystore.masterKeySerial);
  };

  for (const [name, errno] of ERRNOS) {
    it(`${name}: ImportKey answers FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE for the master key; nothing is saved or left in the kernel, and the same material imports once the kernel takes the master key`, async () => {
      const w = await world(sealing);
      await w.km.create({ name: 'other' });
      const before = snapshot(w);
      refuse(w, errno);
      const material = randomBytes(32);
      const copy = Buffer.from(material);
      expect(await answer(w.km.import({ name: 'imp', suite: 'aes-256-gcm', material }))).toEqual(refusedAnswer(name));
      expect(material.equals(Buffer.alloc(32))).toBe(true); // wiped all the same
      expect(snapshot(w)).toEqual(before);
      expect(await answer(Promise.resolve().then(() => w.km.get('imp')))).toMatchObject({ code: 'NOT_FOUND' });
      // Nothing of the failure is kept (no fingerprint of the material, no half key).
      fake.refused.clear();
      expect((await w.km.import({ name: 'imp', suite: 'aes-256-gcm', material: copy })).versions).toHaveLength(1);
      expect(w.fileKey('imp')!.versions).toHaveLength(1);
    });
  }

  it('RotateKey of an imported key with new material: refused alike, the key keeps its versions in memory, on disk and in the kernel', async () => {
    // Fingerprints off: with AF_ALG faked every material would have the same one.
    const w = await world((x) => (sealing(x), x.status.set('hmac-sha256', 'missing')));
    await w.km.import({ name: 'imp', suite: 'aes-256-gcm', material: randomBytes(32) });
    const before = snapshot(w);
    refuse(w, 128);
    expect(await answer(w.km.rotate('imp', randomBytes(32)))).toEqual(refusedAnswer('EKEYREVOKED'));
    expect(snapshot(w)).toEqual(before);
    expect(w.km.get('imp').versions).toHaveLength(1);
    expect((await w.km.forEncrypt('imp')).version).toBe(1);
  });
});

describe('the master key refused when the kernel wraps a generated key (host keyrings)', () => {
  const invalidate = (w: World) => keyctl.invalidateKey(w.keystore.masterKeySerial);
  const unlink = (w: World) => keyctl.unlinkKey(w.keystore.masterKeySerial, w.keystore.keyring);

  for (const [how, tamper, errno] of [
    ['invalidated', invalidate, 'ENOKEY'],
    ['unlinked from the daemon keyring', unlink, 'EACCES'],
  ] as const) {
    it(`${how}: CreateKey and RotateKey answer FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE (${errno}); nothing is saved, no kernel key is left behind, existing versions keep serving`, async () => {
      const w = await world();
      const k = await w.km.create({ name: 'k' });
      const before = snapshot(w);
      tamper(w);
      expect(await answer(w.km.create({ name: 'new' }))).toEqual(refusedAnswer(errno));
      expect(await answer(w.km.create({ name: 'new2', suite: 'aes-256-ctr-hmac-sha256' }))).toEqual(refusedAnswer(errno));
      expect(await answer(w.km.rotate('k'))).toEqual(refusedAnswer(errno));
      expect(snapshot(w)).toEqual(before);
      expect(w.km.get('k')).toEqual(k);
      expect(w.km.size).toBe(1);
      expect((await w.km.forEncrypt('k')).version).toBe(1);
      // A restart loads the master key again: everything works, nothing of the failures is in the state.
      await w.restart();
      expect((await w.km.rotate('k')).versions).toHaveLength(2);
      expect((await w.km.create({ name: 'new' })).versions).toHaveLength(1);
      expect(w.file().keys.map((r) => [r.name, r.versions.length])).toEqual([['k', 2], ['new', 1]]);
    });
  }

  it('a scheduled rotation fails with a message that names the master key and says to restart, backs off (no retry at once), and rotates after a restart', async () => {
    const w = await world();
    await w.km.create({ name: 'daily', rotationPeriodMs: HOUR });
    await w.km.create({ name: 'hourly', rotationPeriodMs: HOUR });
    w.clock += HOUR + SECOND;
    const before = snapshot(w);
    invalidate(w);
    const err = await w.km.runDueWork().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DueWorkFailed);
    expect((err as Error).message).toMatch(/^scheduled work failed for 2 keys: "daily": .*the kernel refuses the daemon's master key \(ENOKEY\).*Restart ringfenced: it loads the master key into the kernel again/);
    expect((err as InstanceType<typeof DueWorkFailed>).errors.map((e) => toApiError(e).metadata)).toEqual([
      { kernel_key: 'master', errno: 'ENOKEY' },
      { kernel_key: 'master', errno: 'ENOKEY' },
    ]);
    expect(snapshot(w)).toEqual(before);
    // Put off: the scheduler waits for the retry time, and a pass before it tries nothing.
    expect(w.km.nextDueTime()).toBe(w.clock + SECOND);
    expect(await w.km.runDueWork()).toEqual({ deleted: [], rotated: [] });
    expect(snapshot(w)).toEqual(before);
    await w.restart();
    expect((await w.km.runDueWork()).rotated.sort()).toEqual(['daily', 'hourly']);
  });

  it('Encrypt at the encryption limit, where the key is rotated first, answers the master key refusal and counts nothing past the limit', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 2, reservationBlock: 1 }));
    await w.km.create({ name: 'k' });
    await w.km.forEncrypt('k', 2);
    const before = snapshot(w);
    invalidate(w);
    expect(await answer(w.km.forEncrypt('k'))).toEqual(refusedAnswer('ENOKEY'));
    expect(snapshot(w)).toEqual(before);
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(2);
  });
});
