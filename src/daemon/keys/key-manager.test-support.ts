/**
 * The world key-manager tests run in, with everything real: a KernelKeystore (keyrings, `encrypted`
 * keys wrapped by a master key), KeyMaterial, a StateStore in a temp dir, and a clock the tests move.
 * What the manager claims is checked against independent truth: the state file as it is on disk,
 * and the kernel (KEYCTL_DESCRIBE / KEYCTL_READ on the keys and the daemon keyring).
 *
 * The host has no AF_ALG, so KeyMaterial gets no sealing suite: imported keys are refused here (and
 * tested with AF_ALG in the VM guests); everything about generated keys runs here.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import * as keyctl from '../../../native-ffi/keyctl.js';
import type { AlgStatus } from '../../capabilities/probe.js';
import type { AeadSuite } from '../../capabilities/suites.js';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { CryptoEngine } from '../engine/engine.js';
import { KernelKeystore } from '../keystore/kernel-keystore.js';
import { StateStore } from '../state/state-store.js';
import { KeyManager, type KeyPolicyLimits } from './key-manager.js';
import { MaterialFingerprints } from './fingerprints.js';
import { pendingPostponementMs } from './due-work-scheduler.js';
import { KeyMaterial } from './material.js';
import { loadedState, type KeyRecord, type PersistedState } from './model.js';

export const SECOND = 1000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;
export const YEARS_100 = 3_155_760_000_000;
export const T0 = Date.UTC(2026, 0, 1, 12);

/** Key bytes per kernel key of each suite, written out here rather than read from suites.ts. */
export const PARTS: Record<string, number[]> = {
  'aes-256-gcm': [32],
  'chacha20-poly1305': [32],
  'aes-256-ccm': [32],
  'aes-256-ctr-hmac-sha256': [32, 32],
  'hmac-sha256': [32],
  'hmac-sha384': [48],
  'hmac-sha512': [64],
};

export const enospc = (): NodeJS.ErrnoException => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });

let worlds = 0;
/** Names kernel keys and keyrings apart from other test files run in the same worker process. */
const RUN = randomBytes(4).toString('hex');

/**
 * One daemon's world: a state directory that outlives "processes", and per boot a fresh keyring,
 * master key, engine and KeyManager. crash() is kill -9: the kernel drops the keyring, nothing is
 * flushed or closed by the manager.
 */
export class World {
  readonly dir = mkdtempSync(join(tmpdir(), 'rf-km-'));
  readonly n = worlds++;
  readonly masterName = `rf-km-${process.pid}-${RUN}-${this.n}-master`;
  master = randomBytes(32);
  clock = T0;
  /** What the scheduler's next run would postpone deletions by (the daemon: pendingPostponementMs). */
  pendingPostponement: (wall: number) => number = () => 0;
  limits: KeyPolicyLimits = { minRotationPeriodMs: HOUR, minDeletionWaitingPeriodMs: DAY };
  /** Suites the "kernel" does not give as available. */
  status = new Map<string, AlgStatus>();
  /** The suite KeyMaterial seals imported material with: none by default (the host has no AF_ALG; a test that fakes it may set one). */
  sealWith: AeadSuite | undefined = undefined;
  /** uids held to the daemon-wide caps only (the daemon: root and its own). */
  uncapped = new Set<number>();
  /** What the manager logged. */
  logs: { msg: string; fields: Record<string, unknown> | undefined; level: string }[] = [];
  /** Every document persisted, in order, as it was handed to persist. */
  persisted: PersistedState[] = [];
  persistCalls = 0;
  inFlight = 0;
  maxInFlight = 0;
  /** Makes persist fail (before anything is written) when it returns an error. */
  failWith: ((doc: PersistedState) => Error | undefined) | undefined;
  /** Awaited by persist before it writes (to interleave concurrent callers). */
  delay: (() => Promise<void>) | undefined;
  /** Called once a document is on disk, just before persist returns to the manager. */
  afterSave: ((doc: PersistedState) => void) | undefined;
  store!: StateStore;
  keystore!: KernelKeystore;
  engine!: CryptoEngine;
  km!: KeyManager;
  private boots = 0;
  private live = false;

  static async create(setup: (w: World) => void = () => {}): Promise<World> {
    const w = new World();
    setup(w);
    w.store = await StateStore.open(join(w.dir, 'state'));
    await w.boot();
    return w;
  }

  /** Starts a "daemon process" on the state file as it is on disk. */
  async boot(opts: { master?: Buffer; masterName?: string } = {}): Promise<void> {
    if (this.live) throw new Error('crash() first');
    this.keystore = new KernelKeystore({ keyringName: `rf-km-${process.pid}-${RUN}-${this.n}-ring${this.boots++}`, masterName: opts.masterName ?? this.masterName });
    this.live = true;
    this.keystore.loadMasterKey(Buffer.from(opts.master ?? this.master));
    this.engine = new CryptoEngine();
    this.km = new KeyManager({
      material: new KeyMaterial(this.keystore, this.engine, this.sealWith),
      fingerprints: new MaterialFingerprints(this.keystore, this.engine),
      persist: (doc) => this.persist(doc),
      suiteStatus: (name) => this.status.get(name) ?? 'available',
      limits: this.limits,
      log: (msg, fields, level = 'info') => void this.logs.push({ msg, fields, level }),
      now: () => this.clock,
      pendingClockPostponementMs: (wall) => this.pendingPostponement(wall),
      uncappedCallers: this.uncapped,
    });
    await this.km.open(loadedState(this.store.load(), this.store.statePath));
  }

  /** kill -9: the process's keyring goes, the manager is not closed. */
  crash(): void {
    if (!this.live) return;
    this.live = false;
    this.keystore.close();
    this.engine.close();
  }

  async restart(): Promise<void> {
    this.crash();
    await this.boot();
  }

  async dispose(): Promise<void> {
    if (this.live) {
      this.km.close();
      this.crash();
    }
    await this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async persist(doc: PersistedState): Promise<void> {
    this.persistCalls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const snapshot = structuredClone(doc);
      if (this.delay) await this.delay();
      const err = this.failWith?.(snapshot);
      if (err) throw err;
      await this.store.save(snapshot);
      this.persisted.push(snapshot);
      this.afterSave?.(snapshot);
    } finally {
      this.inFlight--;
    }
  }

  /** state.json as it is on disk. */
  file(): PersistedState {
    return JSON.parse(readFileSync(this.store.statePath, 'utf8')) as PersistedState;
  }

  fileText(): string | undefined {
    return existsSync(this.store.statePath) ? readFileSync(this.store.statePath, 'utf8') : undefined;
  }

  fileKey(name: string): KeyRecord | undefined {
    return this.file().keys.find((k) => k.name === name);
  }

  /** The ringfence keys the kernel holds in this boot's keyring: description -> serial (read from the keyring itself). */
  kernelKeys(): Map<string, number> {
    const ring = keyctl.readKey(this.keystore.keyring);
    const out = new Map<string, number>();
    for (let i = 0; i + 4 <= ring.length; i += 4) {
      const serial = ring.readInt32LE(i);
      try {
        const d = keyctl.describeKey(serial);
        if (d.description.startsWith('ringfence:')) out.set(d.description, serial);
      } catch {
        // invalidated, waiting for the kernel's garbage collector
      }
    }
    return out;
  }
}

let current: World[] = [];
export async function world(setup?: (w: World) => void): Promise<World> {
  // One world at a time: the `encrypted` key type finds its master key by name in all of this
  // process's keyrings, and the names are unique per world anyway.
  const w = await World.create(setup);
  current.push(w);
  return w;
}
/** For afterEach in each test file: every world a test made is disposed. */
export async function disposeWorlds(): Promise<void> {
  for (const w of current.splice(0)) await w.dispose();
}

export async function apiError(op: Promise<unknown> | (() => unknown)): Promise<ApiError> {
  try {
    await (typeof op === 'function' ? op() : op);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('expected an ApiError, but the call succeeded');
}

export async function expectApi(op: Promise<unknown> | (() => unknown), code: (typeof Status)[keyof typeof Status], reason: ErrorReason): Promise<ApiError> {
  const err = await apiError(op);
  expect({ code: Status[err.code], reason: ErrorReason[err.reason], message: err.message }).toMatchObject({ code: Status[code], reason: ErrorReason[reason] });
  return err;
}

export const desc = (id: string, version: number, part: number) => `ringfence:${id}:${version}:${part}`;
export const idBuf = (r: KeyRecord) => Buffer.from(r.id, 'hex');

/** The errno KEYCTL_DESCRIBE gives for a serial, or 'ok'. */
export function describeCode(serial: number): string {
  try {
    keyctl.describeKey(serial);
    return 'ok';
  } catch (err) {
    return String((err as NodeJS.ErrnoException).code);
  }
}

/** Whether a kernel key exists; a destroyed (invalidated) one is ENOKEY. */
export function alive(serial: number): boolean {
  try {
    keyctl.describeKey(serial);
    return true;
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOKEY');
    return false;
  }
}

/** The key length an `encrypted` key blob declares ("default user:<master> <bytes> <hex>"). */
export function blobBytes(blob: string): { master: string; bytes: number } {
  const m = /^default user:(\S+) (\d+) [0-9a-f]+$/.exec(blob);
  if (!m) throw new Error('not an encrypted key blob');
  return { master: m[1]!, bytes: Number(m[2]) };
}

/** Serials of one version of a key, resolved the way operations resolve them (without counting). */
export function serialsOf(w: World, r: KeyRecord, version: number): readonly number[] {
  return r.purpose === 'aead' ? w.km.forDecrypt(idBuf(r), version, r.suite).serials : w.km.forVerify(r.name, version).serials;
}
