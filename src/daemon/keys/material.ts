/**
 * The kernel side of key versions: creating, persisting and restoring the kernel keys behind them.
 *
 * - Generated versions are `encrypted` keys the kernel creates from its own RNG, wrapped by the master
 *   key; the wrapped blob the kernel hands back is what we persist.
 * - Imported versions are `logon` keys, which the kernel never returns to user space. To survive a
 *   restart their material is sealed, at import, by an AF_ALG AEAD transform keyed by the master
 *   key's serial (so the master key is used without its bytes in this process) and opened again at
 *   start-up, just before it goes back into the kernel. So imported material crosses user space at
 *   import and at each start-up, and is wiped each time; generated material never does.
 */
import { AEAD_SUITES, aeadSuite, type AeadSuite, type MacSuite } from '../../capabilities/suites.js';
import { getRandom } from '../../../native-ffi/random.js';
import type { CryptoEngine } from '../engine/engine.js';
import { open, seal } from '../engine/suite-ops.js';
import type { KernelKeystore } from '../keystore/kernel-keystore.js';
import { KERNEL_KEY_REFUSALS, KeystoreError, masterKeyRefused } from '../keystore/errors.js';
import { isEngineError } from '../engine/errors.js';

const SEALED_PREFIX = 'sealed';

/** Suites that can seal under the 32-byte master key: single-key AEADs, in order of preference. */
/**
 * Suites that may seal imported material under the master key, in order of preference: AES-256-CCM
 * first because restricted kernels (af_alg_restrict, Linux >= 7.3) allow it where they refuse GCM, so
 * a state written on one kernel still opens after a move to the other. Sealing is rare (import,
 * start-up), so CCM's speed does not matter here.
 */
export const WRAP_SUITES = [...AEAD_SUITES]
  .filter((s) => s.keyBytes.length === 1 && s.keyBytes[0] === 32)
  .sort((a, b) => Number(b.name === 'aes-256-ccm') - Number(a.name === 'aes-256-ccm'));

export class KeyMaterial {
  constructor(
    private readonly keystore: KernelKeystore,
    private readonly engine: CryptoEngine,
    /** The suite that seals imported material; the first of WRAP_SUITES this kernel allows. */
    private readonly wrapSuite: AeadSuite | undefined,
  ) {}

  /** Whether imported material (and the master check) can be sealed under the master key on this kernel. */
  get canSeal(): boolean {
    return this.wrapSuite !== undefined;
  }

  private static description(keyId: string, version: number, part: number): string {
    return `ringfence:${keyId}:${version}:${part}`;
  }

  /** New kernel-generated material for one version: one kernel key per suite key. */
  generate(keyId: string, version: number, suite: AeadSuite | MacSuite): { serials: number[]; blobs: string[] } {
    const serials: number[] = [];
    const blobs: string[] = [];
    try {
      for (const [part, bytes] of suite.keyBytes.entries()) {
        const { serial, blob } = this.keystore.generate(KeyMaterial.description(keyId, version, part), bytes);
        serials.push(serial);
        blobs.push(blob);
      }
    } catch (err) {
      this.destroy(serials);
      throw err;
    }
    return { serials, blobs };
  }

  /** Imports caller material (wiped here, whatever happens) for one version. */
  async import(keyId: string, version: number, suite: AeadSuite | MacSuite, material: Buffer): Promise<{ serials: number[]; blobs: string[] }> {
    const serials: number[] = [];
    const blobs: string[] = [];
    try {
      let offset = 0;
      for (const [part, bytes] of suite.keyBytes.entries()) {
        const piece = Buffer.from(material.subarray(offset, offset + bytes));
        offset += bytes;
        try {
          blobs.push(await this.sealMaterial(piece, aadFor(keyId, version, part)));
          serials.push(this.keystore.importRaw(KeyMaterial.description(keyId, version, part), piece)); // wipes piece
        } finally {
          piece.fill(0); // also when sealing or the kernel failed first
        }
      }
      return { serials, blobs };
    } catch (err) {
      this.destroy(serials);
      throw err;
    } finally {
      material.fill(0);
    }
  }

  /**
   * Brings one persisted version back into the kernel. `fingerprint` sees each part of imported
   * material while it is in user space (see fingerprints.ts); its results come back with the serials.
   */
  async restore(
    keyId: string,
    version: number,
    origin: 'generated' | 'imported',
    blobs: readonly string[],
    fingerprint: (part: Buffer) => Promise<string | undefined> = async () => undefined,
  ): Promise<{ serials: number[]; fingerprints: string[] }> {
    const serials: number[] = [];
    const fingerprints: string[] = [];
    try {
      for (const [part, blob] of blobs.entries()) {
        const description = KeyMaterial.description(keyId, version, part);
        if (origin === 'generated') {
          serials.push(this.keystore.load(description, blob));
        } else {
          const piece = await this.openMaterial(blob, aadFor(keyId, version, part));
          try {
            const fp = await fingerprint(piece);
            if (fp !== undefined) fingerprints.push(fp);
          } catch (err) {
            piece.fill(0);
            throw err;
          }
          serials.push(this.keystore.importRaw(description, piece)); // wipes piece
        }
      }
      return { serials, fingerprints };
    } catch (err) {
      this.destroy(serials);
      throw err;
    }
  }

  /** Destroys kernel keys and every transform keyed by them. Best effort: the kernel frees them with the keyring anyway. */
  destroy(serials: readonly number[]): void {
    for (const serial of serials) {
      this.engine.forgetKey(serial);
      try {
        this.keystore.destroy(serial);
      } catch {
        // Already gone, or the keyring is closing.
      }
    }
  }

  /** A fresh canary sealed under the master key (persisted as masterCheck). */
  async masterCheck(): Promise<string> {
    return this.sealMaterial(getRandom(32), Buffer.from('ringfence:master-check'));
  }

  /**
   * Throws MASTER_KEY_MISMATCH unless `check` opens with the loaded master key. False when it cannot
   * be tried: sealed with a suite this kernel refuses (a GCM check from before a move to a
   * restricted kernel).
   */
  async verifyMasterCheck(check: string): Promise<boolean> {
    let opened: Buffer;
    try {
      opened = await this.openMaterial(check, Buffer.from('ringfence:master-check'));
    } catch (err) {
      if (err instanceof KeystoreError && err.code === 'KEY_TYPE_UNSUPPORTED') return false;
      throw err;
    }
    opened.fill(0);
    return true;
  }

  private async sealMaterial(piece: Buffer, aad: Buffer): Promise<string> {
    const suite = this.wrapSuite;
    if (!suite) {
      throw new KeystoreError('KEY_TYPE_UNSUPPORTED', `none of ${WRAP_SUITES.map((s) => s.name).join(', ')} is available to seal imported keys under the master key`);
    }
    const nonce = getRandom(suite.nonceBytes);
    const sealed = await seal(this.engine, suite, [this.keystore.masterKeySerial], nonce, aad, piece).catch((err: unknown) => {
      throw masterKeyError(err, 'sealing key material under the master key');
    });
    return `${SEALED_PREFIX}:${suite.name}:${Buffer.concat([nonce, sealed]).toString('base64')}`;
  }

  private async openMaterial(blob: string, aad: Buffer): Promise<Buffer> {
    const [prefix, suiteName, data] = blob.split(':');
    const suite = suiteName ? aeadSuite(suiteName) : undefined;
    if (prefix !== SEALED_PREFIX || !suite || !data) throw new KeystoreError('INVALID_KEY', 'a sealed key in the state file is malformed');
    const bytes = Buffer.from(data, 'base64');
    try {
      return await open(this.engine, suite, [this.keystore.masterKeySerial], bytes.subarray(0, suite.nonceBytes), aad, bytes.subarray(suite.nonceBytes));
    } catch (err) {
      if (isEngineError(err, 'AUTHENTICATION_FAILED')) {
        throw new KeystoreError('MASTER_KEY_MISMATCH', 'the master key does not open the keys in the state directory (wrong master.key?)', err);
      }
      if (isEngineError(err, 'ALGORITHM_UNAVAILABLE')) {
        throw new KeystoreError(
          'KEY_TYPE_UNSUPPORTED',
          `sealed under the master key with ${suite.name}, which this kernel refuses (af_alg_restrict?); on a kernel that allows ${suite.name}, rotate the key with new material, or delete it and import its material again once it is gone (two keys holding the same material would share one nonce space; new seals use ${WRAP_SUITES[0]!.name})`,
          err,
        );
      }
      throw err;
    }
  }
}

/**
 * The engine refusing to key a transform with the master key's serial is the kernel refusing the
 * master key itself (review by helper-210: ImportKey answered INTERNAL). Only where the running
 * daemon seals: at start-up, the key was just loaded and a restart is no advice.
 */
function masterKeyError(err: unknown, what: string): unknown {
  return isEngineError(err, 'KEY_UNUSABLE') && err.errno !== undefined && KERNEL_KEY_REFUSALS.has(err.errno) ? masterKeyRefused(what, err.errno, err) : err;
}

function aadFor(keyId: string, version: number, part: number): Buffer {
  return Buffer.from(`ringfence:import:${keyId}:${version}:${part}`);
}
