/**
 * Keys of a suite this kernel refuses: state made on a kernel that allowed it (6.12, aes-256-gcm),
 * opened by a daemon on af_alg_restrict=1 (found by review: helper-89). CreateKey refused the suite,
 * but RotateKey made new versions of it, the scheduler rotated it on every period, and using it
 * failed in the engine with an error that named neither the key nor what to do.
 * Host: keys in the kernel keyring (keyctl); nothing here reaches AF_ALG.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AlgStatus } from '../../capabilities/probe.js';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { keyMessage } from '../api/key-message.js';
import { CryptoEngine } from '../engine/engine.js';
import { KernelKeystore } from '../keystore/kernel-keystore.js';
import { StateStore } from '../state/state-store.js';
import { MaterialFingerprints } from './fingerprints.js';
import { KeyManager } from './key-manager.js';
import { KeyMaterial } from './material.js';
import { loadedState } from './model.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 1, 12);

let dir: string;
let cleanups: (() => unknown)[];
let status: Map<string, AlgStatus>;
let clock: number;
let warnings: string[];
let store: StateStore;
let keystore: KernelKeystore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rf-refused-suite-'));
  cleanups = [];
  status = new Map();
  clock = T0;
  warnings = [];
  store = await StateStore.open(join(dir, 'state'));
  cleanups.push(() => store.close());
  keystore = new KernelKeystore({ keyringName: `rf-refused-${process.pid}-ring`, masterName: `rf-refused-${process.pid}-master` });
  keystore.loadMasterKey(randomBytes(32));
  const engine = new CryptoEngine();
  cleanups.push(() => keystore.close(), () => engine.close());
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

/** A key manager over the test's state and keyring, as a daemon start opens it. */
async function openManager(): Promise<KeyManager> {
  const engine = new CryptoEngine();
  const km = new KeyManager({
    material: new KeyMaterial(keystore, engine, undefined),
    fingerprints: new MaterialFingerprints(keystore, engine),
    persist: (doc) => store.save(doc),
    suiteStatus: (name) => status.get(name) ?? 'available',
    limits: { minRotationPeriodMs: HOUR, minDeletionWaitingPeriodMs: 86_400_000 },
    now: () => clock,
    log: (msg, _fields, level) => void (level === 'warn' && warnings.push(msg)),
  });
  await km.open(loadedState(store.load(), store.statePath));
  cleanups.push(() => km.close(), () => engine.close());
  return km;
}

async function refusal(op: Promise<unknown> | (() => unknown)): Promise<ApiError> {
  try {
    await (typeof op === 'function' ? op() : op);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const stateText = () => readFileSync(store.statePath, 'utf8');

describe('a key whose suite this kernel refuses', () => {
  it('is not rotated: RotateKey is refused as CreateKey is, naming the key and what the kernel allows, and nothing changes', async () => {
    const km = await openManager();
    expect((await km.create({ name: 'g' })).suite).toBe('aes-256-gcm'); // as on 6.12
    status.set('aes-256-gcm', 'restricted'); // now under af_alg_restrict=1
    status.set('chacha20-poly1305', 'restricted');
    const before = stateText();
    const err = await refusal(km.rotate('g'));
    expect([err.code, ErrorReason[err.reason]]).toEqual([Status.FAILED_PRECONDITION, 'SUITE_RESTRICTED_BY_KERNEL']);
    expect(err.message).toBe(
      'key "g" is aes-256-gcm, which this kernel refuses to the daemon under af_alg_restrict=1: a new version could not be used here; its versions work again on a kernel that allows gcm(aes); for new data, create a key of a suite this kernel allows (aes-256-ccm, aes-256-ctr-hmac-sha256)',
    );
    expect(err.metadata).toEqual({ key_name: 'g', suite: 'aes-256-gcm', kernel_algorithm: 'gcm(aes)', allowed: 'aes-256-ccm,aes-256-ctr-hmac-sha256' });
    expect(km.get('g').versions).toHaveLength(1);
    expect(stateText()).toBe(before);
    // Nor given a rotation period the scheduler would not act on (review by helper-90).
    const period = await refusal(km.update('g', { rotationPeriodMs: HOUR }));
    expect([ErrorReason[period.reason], period.metadata.key_name]).toEqual(['SUITE_RESTRICTED_BY_KERNEL', 'g']);
    expect(stateText()).toBe(before);
    // A suite whose probe failed with another errno is left to the kernel, for rotation as for use:
    // otherwise such a key would encrypt on and never rotate (review by helper-90).
    status.set('aes-256-gcm', 'error');
    expect((await km.rotate('g')).versions).toHaveLength(2);
  });

  it('is not rotated on schedule, and the scheduler does not count it; start-up says so once', async () => {
    const km = await openManager();
    await km.create({ name: 'g', rotationPeriodMs: HOUR });
    await km.create({ name: 'c', suite: 'aes-256-ccm', rotationPeriodMs: 2 * HOUR });
    km.close();
    status.set('aes-256-gcm', 'restricted');
    const reopened = await openManager();
    expect(warnings.filter((w) => w.includes('"g"'))).toEqual([expect.stringMatching(/^key "g" is aes-256-gcm, which this kernel refuses .*; it is not rotated on schedule$/)]);
    expect(warnings.filter((w) => w.includes('"c"'))).toEqual([]);
    // Only the key of an allowed suite is due; otherwise the scheduler would run at once, again and again.
    expect(reopened.nextDueTime()).toBe(T0 + 2 * HOUR);
    // GetKey shows no next rotation for it, which would be overdue for ever.
    expect([keyMessage(reopened, reopened.get('g')).nextRotationTime, keyMessage(reopened, reopened.get('c')).nextRotationTime?.seconds]).toEqual([undefined, BigInt((T0 + 2 * HOUR) / 1000)]);
    clock = T0 + 3 * HOUR;
    expect(await reopened.runDueWork()).toEqual({ deleted: [], rotated: ['c'] });
    expect(reopened.get('g').versions).toHaveLength(1);
    expect(reopened.get('c').versions).toHaveLength(2);
    // A suite whose probe failed (not ENOENT) keeps its period: rotations are left to the kernel.
    status.set('aes-256-gcm', 'error');
    expect(reopened.nextDueTime()).toBe(T0 + HOUR);
    expect(await reopened.runDueWork()).toEqual({ deleted: [], rotated: ['g'] });
  });

  it('is refused when used, naming the key, before anything is counted', async () => {
    const km = await openManager();
    const g = await km.create({ name: 'g' });
    await km.create({ name: 'm', purpose: 'mac', suite: 'hmac-sha512' });
    status.set('aes-256-gcm', 'restricted');
    status.set('hmac-sha512', 'missing');
    const enc = await refusal(km.forEncrypt('g'));
    expect([enc.code, ErrorReason[enc.reason]]).toEqual([Status.FAILED_PRECONDITION, 'SUITE_RESTRICTED_BY_KERNEL']);
    expect(enc.message).toMatch(/^key "g" is aes-256-gcm, which this kernel refuses to the daemon under af_alg_restrict=1: it cannot be used here;/);
    const dec = await refusal(() => km.forDecrypt(Buffer.from(g.id, 'hex'), 1, 'aes-256-gcm'));
    expect(dec.metadata.key_name).toBe('g');
    for (const op of [() => km.forMac('m'), () => km.forVerify('m', undefined)]) {
      const mac = await refusal(op);
      expect([ErrorReason[mac.reason], mac.message]).toEqual(['SUITE_UNAVAILABLE', expect.stringMatching(/^key "m" is hmac-sha512, which this kernel does not provide: it cannot be used here; .* \(hmac-sha256, hmac-sha384\)$/)]);
    }
    // Nothing was counted for the refused encryption.
    status.set('aes-256-gcm', 'available');
    expect(JSON.parse(stateText()).keys.find((k: { name: string }) => k.name === 'g').versions[0].encryptionsReserved).toBe(0);
    // A suite whose probe failed (not ENOENT) is left to the engine, which reports the errno.
    status.set('aes-256-gcm', 'error');
    expect((await km.forEncrypt('g')).version).toBe(1);
  });
});
