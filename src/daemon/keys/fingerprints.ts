/**
 * Which imported material this daemon already holds, so the same bytes are never imported twice:
 * two versions (of one key or of two) sharing material would share one random-nonce space while
 * each counts its encryptions alone, and the suite's safe limit (2^32 for GCM) would hold for
 * neither. A rotation to the old material would also look like a rotation and be none.
 *
 * Each kernel key's worth of material (a part) is fingerprinted by HMAC-SHA256 in the kernel under
 * a key made for this daemon run: random, a `logon` key, never persisted. Fingerprints live in
 * memory only; imported material passes through user space at every start-up anyway (it is opened
 * from its seal just before it goes back into the kernel), so they are made again then. Generated
 * material never leaves the kernel and cannot be imported, so it needs none.
 */
import { macSuite } from '../../capabilities/suites.js';
import { ApiError, ErrorReason, Status } from '../api/errors.js';
import { getRandom } from '../../../native-ffi/random.js';
import type { CryptoEngine } from '../engine/engine.js';
import type { KernelKeystore } from '../keystore/kernel-keystore.js';

const HMAC = macSuite('hmac-sha256')!;

type Log = (msg: string, fields?: Record<string, unknown>, level?: 'info' | 'warn') => void;

/** Where a part of imported material is in use. */
export interface MaterialUse {
  keyId: string;
  version: number;
}

export class MaterialFingerprints {
  private serial: number | undefined;
  /** Fingerprint -> every version holding that part (more than one only in states from before this check). */
  private readonly uses = new Map<string, MaterialUse[]>();

  constructor(
    private readonly keystore: KernelKeystore,
    private readonly engine: CryptoEngine,
  ) {}

  /**
   * Makes this run's fingerprint key. False (nothing is checked) when the kernel refuses it or
   * hmac(sha256); the caller says so in the log.
   */
  open(hmacAvailable: boolean): boolean {
    if (!hmacAvailable) return false;
    this.serial = this.keystore.importRaw('ringfence:material-fingerprint', getRandom(32)); // wipes the random bytes
    return true;
  }

  /** open(), saying in the log when reused material will not be detected. */
  start(canSeal: boolean, hmacAvailable: boolean, log: Log): void {
    if (!canSeal) return; // nothing can be imported on this kernel
    try {
      if (this.open(hmacAvailable)) return;
      log('hmac(sha256) is not available: imported key material is not checked for reuse', {}, 'warn');
    } catch (err) {
      log(`imported key material is not checked for reuse: ${err instanceof Error ? err.message : String(err)}`, {}, 'warn');
    }
  }

  /**
   * Records a restored version's material. Material two versions share (imported before this check
   * existed) is logged, naming both: the operator should rotate one of them.
   */
  noteRestored(fingerprints: readonly string[], use: MaterialUse, nameOf: (keyId: string) => string | undefined, log: Log): void {
    const other = this.find(fingerprints);
    if (other) {
      const name = nameOf(use.keyId);
      const otherName = nameOf(other.keyId) ?? other.keyId;
      log(
        `key "${name}" version ${use.version} has the same material as key "${otherName}" version ${other.version}: they share one nonce space and their encryption limits do not hold; rotate one of them to new material`,
        { key_name: name, version: use.version, other_key_name: otherName, other_version: other.version },
        'warn',
      );
    }
    this.add(fingerprints, use);
  }

  /**
   * The fingerprints of `material`'s parts; INVALID_ARGUMENT when any part is already in use here.
   * Another key is not named: the caller may not be allowed to see it.
   */
  async refuseReused(material: Buffer, sizes: readonly number[], rotating?: { id: string; name: string }): Promise<string[]> {
    const fingerprints = await this.ofParts(material, sizes);
    const use = this.find(fingerprints, rotating?.id);
    if (!use) return fingerprints;
    const where = use.keyId === rotating?.id ? `version ${use.version} of key "${rotating.name}"` : 'another key in this daemon';
    throw new ApiError(
      Status.INVALID_ARGUMENT,
      ErrorReason.KEY_MATERIAL_INVALID,
      `this key material is already in use by ${where}; use new random material (two versions with the same material share one nonce space, so neither one's encryption limit would hold)`,
      { field: 'material' },
    );
  }

  get enabled(): boolean {
    return this.serial !== undefined;
  }

  /** The fingerprint of one part (hex), or undefined when fingerprints are off. */
  async of(part: Buffer): Promise<string | undefined> {
    if (this.serial === undefined) return undefined;
    return (await this.engine.digest(HMAC.algorithms[0], this.serial, HMAC.macBytes, [part])).toString('hex');
  }

  /** The fingerprint of each part of `material` as `sizes` cuts it; [] when fingerprints are off. */
  async ofParts(material: Buffer, sizes: readonly number[]): Promise<string[]> {
    if (this.serial === undefined) return [];
    const out: string[] = [];
    let offset = 0;
    for (const size of sizes) {
      out.push((await this.of(material.subarray(offset, offset + size)))!);
      offset += size;
    }
    return out;
  }

  /** Where any of `fingerprints` is already in use, if anywhere; a version of `preferKey` first. */
  find(fingerprints: readonly string[], preferKey?: string): MaterialUse | undefined {
    let found: MaterialUse | undefined;
    for (const fp of fingerprints) {
      for (const use of this.uses.get(fp) ?? []) {
        if (use.keyId === preferKey) return use;
        found ??= use;
      }
    }
    return found;
  }

  add(fingerprints: readonly string[], use: MaterialUse): void {
    for (const fp of fingerprints) {
      const uses = this.uses.get(fp);
      if (uses) uses.push(use);
      else this.uses.set(fp, [use]);
    }
  }

  /**
   * Forgets a key's material (the key is deleted). Material another key still holds stays known
   * (found by review: deleting one of two keys sharing material freed it for a third).
   */
  removeKey(keyId: string): void {
    for (const [fp, uses] of this.uses) {
      const left = uses.filter((u) => u.keyId !== keyId);
      if (left.length === 0) this.uses.delete(fp);
      else if (left.length < uses.length) this.uses.set(fp, left);
    }
  }

  close(): void {
    if (this.serial !== undefined) {
      this.engine.forgetKey(this.serial);
      try {
        this.keystore.destroy(this.serial);
      } catch {
        // The keyring is closing anyway.
      }
    }
    this.serial = undefined;
    this.uses.clear();
  }
}
