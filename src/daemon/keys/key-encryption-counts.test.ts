/**
 * KeyManager: encryptions counted per version, reserved in the state file before use, and rotation at the limit.
 * The world they run in (real keystore, state file and kernel keys): key-manager.test-support.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorReason, Status } from '../api/errors.js';
import { KeyManager } from './key-manager.js';
import * as keyctl from '../../../native-ffi/keyctl.js';
import { DAY, SECOND, T0, alive, desc, disposeWorlds, expectApi, idBuf, serialsOf, world } from './key-manager.test-support.js';

afterEach(disposeWorlds);

describe('KeyManager: encryption counts', () => {
  it('reserves encryptions in blocks, persisted before an encryption beyond the reservation is returned', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 10 }));
    const r = await w.km.create({ name: 'k' });
    const writes = w.persistCalls;
    const reservedOnDisk = () => w.fileKey('k')!.versions[0]!.encryptionsReserved;
    const seen: number[] = [];
    for (let i = 1; i <= 25; i++) {
      const got = await w.km.forEncrypt('k');
      expect(got.version).toBe(1);
      expect(w.km.encryptionCount(r, 1)).toBe(i);
      expect(reservedOnDisk()).toBeGreaterThanOrEqual(i); // never counts past what the disk has
      seen.push(reservedOnDisk());
    }
    // 1 -> 11, 12 -> 22, 23 -> 33: three writes for 25 encryptions.
    expect([...new Set(seen)]).toEqual([11, 22, 33]);
    expect(w.persistCalls - writes).toBe(3);
  });

  it('after a crash the count resumes at or above every encryption made (it may overcount, never undercount)', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, reservationBlock: 10 }));
    await w.km.create({ name: 'k' });
    for (let i = 0; i < 25; i++) await w.km.forEncrypt('k');
    await w.restart();
    const count = w.km.encryptionCount(w.km.get('k'), 1);
    expect(count).toBeGreaterThanOrEqual(25);
    expect(count).toBeLessThanOrEqual(25 + 10 + 1);
    await w.km.forEncrypt('k');
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(count + 1);
    expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBeGreaterThanOrEqual(count + 1);
    // A second crash right after: still never below.
    await w.restart();
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBeGreaterThanOrEqual(count + 1);
  });

  it('rotates a generated key before its primary version passes the encryption limit', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 5 }));
    const r = await w.km.create({ name: 'k' });
    expect(w.km.encryptionLimit(r)).toBe(5);
    for (let i = 0; i < 5; i++) expect((await w.km.forEncrypt('k')).version).toBe(1);
    expect(w.fileKey('k')!.versions).toHaveLength(1);
    expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBe(5); // capped at the limit
    w.clock += 60 * SECOND;
    const sixth = await w.km.forEncrypt('k');
    expect(sixth.version).toBe(2);
    expect(keyctl.describeKey(sixth.serials[0]!).description).toBe(desc(r.id, 2, 0));
    const onDisk = w.fileKey('k')!;
    expect(onDisk.versions.map((v) => [v.version, v.encryptionsReserved])).toEqual([[1, 5], [2, expect.any(Number)]]);
    expect(onDisk.versions[1]!.encryptionsReserved).toBeGreaterThanOrEqual(1);
    expect(onDisk.rotateTime).toBe(T0 + 60 * SECOND);
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(5);
    expect(w.km.encryptionCount(w.km.get('k'), 2)).toBe(1);
    // Version 1 still decrypts.
    expect(serialsOf(w, w.km.get('k'), 1).every(alive)).toBe(true);
    // More at once than any version may make: refused, not an endless series of rotations.
    const versions = w.km.get('k').versions.length;
    const tooMany = await expectApi(w.km.forEncrypt('k', 6), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    expect(tooMany.metadata.encryption_limit).toBe('5');
    expect(w.fileKey('k')!.versions).toHaveLength(versions);
    // After a crash at the limit the next encryption still goes to a fresh version.
    for (let i = 0; i < 4; i++) await w.km.forEncrypt('k');
    await w.restart();
    expect((await w.km.forEncrypt('k')).version).toBe(3);
  });

  it('list pages over the visible keys only, so a page never ends on a hidden one', async () => {
    const w = await world();
    for (const name of ['a-hidden', 'b', 'c-hidden', 'd']) await w.km.create({ name });
    const visible = (n: string) => !n.endsWith('-hidden');
    const names = (r: { keys: { name: string }[]; more: boolean }) => [r.keys.map((k) => k.name), r.more];
    expect(names(w.km.list('', 1, visible))).toEqual([['b'], true]);
    expect(names(w.km.list('b', 1, visible))).toEqual([['d'], false]);
    expect(names(w.km.list('', 10))).toEqual([['a-hidden', 'b', 'c-hidden', 'd'], false]);
  });

  it('countEncryptions (a running stream) stops once the key is disabled or scheduled for deletion', async () => {
    const w = await world();
    await w.km.create({ name: 'k' });
    const stream = await w.km.forEncrypt('k');
    await w.km.countEncryptions(stream, 1);
    await w.km.setEnabled('k', false);
    await expectApi(w.km.countEncryptions(stream, 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED);
    await w.km.setEnabled('k', true);
    await w.km.countEncryptions(stream, 1);
    await w.km.scheduleDeletion('k', DAY);
    await expectApi(w.km.countEncryptions(stream, 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION);
  });

  it('countEncryptions stops a stream whose version min_decryption_version has since retired, and counts nothing (found by review)', async () => {
    const w = await world();
    await w.km.create({ name: 'k' });
    const stream = await w.km.forEncrypt('k');
    await w.km.countEncryptions(stream, 1);
    await w.km.rotate('k');
    await w.km.update('k', { minDecryptionVersion: 2 });
    const counted = w.km.encryptionCount(w.km.get('k'), 1);
    const err = await expectApi(w.km.countEncryptions(stream, 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_VERSION_DISABLED);
    expect(err.metadata).toEqual({ key_name: 'k', key_version: '1', min_decryption_version: '2' });
    expect(err.message).toContain('start a new stream (it will use version 2)');
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(counted);
    // Lowered again, the stream's version may seal once more.
    await w.km.update('k', { minDecryptionVersion: 1 });
    await w.km.countEncryptions(stream, 1);
  });

  it('new work moves to a new version streamHeadroom before the limit; a stream on the old one runs on to the limit (found by review)', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 10, streamHeadroom: 3, reservationBlock: 1 }));
    await w.km.create({ name: 'k' });
    const stream = await w.km.forEncrypt('k'); // a stream starts on v1: 1 counted
    for (let i = 0; i < 6; i++) expect((await w.km.forEncrypt('k')).version).toBe(1); // 7 counted
    expect((await w.km.forEncrypt('k')).version).toBe(2); // 7 + 1 > 10 - 3: rotated
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(7);
    await w.km.countEncryptions(stream, 3); // the stream's chunks: up to the limit itself
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(10);
    await expectApi(w.km.countEncryptions(stream, 1), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    // More at once than a fresh version may take is refused, never a rotation loop.
    await expectApi(w.km.forEncrypt('k', 8), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    expect(w.km.get('k').versions).toHaveLength(2);
    // (An imported key, which cannot move, counts up to its limit: imports need AF_ALG, so that is
    // tested in the guests, test/e2e/keys.kernel.test.ts.)
  });

  it('the default headroom is limit / 256: 2^24 at GCM\'s 2^32, 2 at 512', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 512, reservationBlock: 4096 }));
    await w.km.create({ name: 'k' });
    await w.km.forEncrypt('k', 510);
    expect((await w.km.forEncrypt('k')).version).toBe(2); // 510 + 1 > 512 - 2
    // The suite's own limit (no encryptionLimit): new work moves 2^24 before 2^32 (found by review:
    // only the small case was checked).
    const g = await world((x) => (x.limits = { ...x.limits, reservationBlock: 4096 }));
    await g.km.create({ name: 'gcm', suite: 'aes-256-gcm' });
    expect((await g.km.forEncrypt('gcm', 2 ** 32 - 2 ** 24)).version).toBe(1);
    expect((await g.km.forEncrypt('gcm')).version).toBe(2);
  });

  it('countEncryptions on a fixed version refuses at the limit with ENCRYPTION_LIMIT_REACHED and counts nothing', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 5, reservationBlock: 1 }));
    await w.km.create({ name: 'k' });
    const stream = await w.km.forEncrypt('k');
    for (let i = 0; i < 4; i++) {
      await w.km.countEncryptions(stream, 1);
      expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBeGreaterThanOrEqual(w.km.encryptionCount(w.km.get('k'), 1));
    }
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(5);
    const err = await expectApi(w.km.countEncryptions(stream, 1), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    expect(err.metadata).toEqual({ key_name: 'k', key_version: '1', encryption_limit: '5' });
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(5);
    // The unary path rotates instead; the old stream stays at its limit.
    const next = await w.km.forEncrypt('k');
    expect(next.version).toBe(2);
    await expectApi(w.km.countEncryptions(stream, 1), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    await w.km.countEncryptions(next, 3);
    expect(w.km.encryptionCount(w.km.get('k'), 2)).toBe(4);
    await expectApi(w.km.countEncryptions(next, 2), Status.RESOURCE_EXHAUSTED, ErrorReason.ENCRYPTION_LIMIT_REACHED);
    // A key deleted under a running stream: NOT_FOUND.
    await w.km.scheduleDeletion('k', DAY);
    w.clock += DAY;
    await w.km.runDueWork();
    await expectApi(w.km.countEncryptions(next, 1), Status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND);
  });

  it('concurrent chunks of streams on one version never count past its limit or past what the disk reserved', async () => {
    const w = await world((x) => (x.limits = { ...x.limits, encryptionLimit: 5, reservationBlock: 1 }));
    await w.km.create({ name: 'k' });
    w.delay = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
    const a = await w.km.forEncrypt('k');
    const b = await w.km.forEncrypt('k');
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => w.km.countEncryptions(i % 2 ? a : b, 1)));
    const refused = outcomes.filter((o) => o.status === 'rejected');
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(3);
    for (const o of refused) expect((o as PromiseRejectedResult).reason).toMatchObject({ reason: ErrorReason.ENCRYPTION_LIMIT_REACHED });
    expect(w.km.encryptionCount(w.km.get('k'), 1)).toBe(5);
    expect(w.fileKey('k')!.versions[0]!.encryptionsReserved).toBe(5);
  });

  it('MAC keys have no encryptions', async () => {
    const w = await world();
    const m = await w.km.create({ name: 'm', purpose: 'mac' });
    expect(w.km.encryptionLimit(m)).toBe(0);
    const err = await expectApi(w.km.forEncrypt('m'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH);
    expect(err.metadata).toEqual({ key_name: 'm', purpose: 'MAC' });
    const a = await w.km.create({ name: 'a' });
    expect(err.message).toBe('key "m" is a MAC key; this operation needs an AEAD key');
    const wrong = await expectApi(() => w.km.forMac('a'), Status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH);
    // "an AEAD key", not "a AEAD key" (found by helper-205 running the CLI).
    expect(wrong.message).toBe('key "a" is an AEAD key; this operation needs a MAC key');
    await expectApi(() => w.km.forVerify('a', 1), Status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH);
    // A ciphertext naming a MAC key was altered (Encrypt never names one).
    await expectApi(() => w.km.forDecrypt(idBuf(m), 1, 'hmac-sha256'), Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED);
    expect(w.km.forMac('m').serials).toEqual(serialsOf(w, m, 1));
    expect(a.purpose).toBe('aead');
  });
});
