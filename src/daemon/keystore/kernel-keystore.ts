/**
 * The key store's kernel side: a daemon-private keyring holding
 * - the master key, a `user` key that wraps every generated key;
 * - generated keys, `encrypted` keys created inside the kernel from its RNG and wrapped by the master
 *   key (the wrapped blob is all that is persisted, and `load` brings the key back);
 * - imported keys, `logon` keys, which the kernel never lets user space read back.
 *
 * Keys are reachable only through the keyring, which hangs off this process's process keyring, so only
 * this process possesses them. Each key keeps possessor VIEW+SEARCH and nothing else: no owner, group
 * or other rights, no WRITE/SETATTR (its permissions are frozen), and it is destroyed by INVALIDATE.
 * Note the kernel still lets a possessor with SEARCH read a readable type (user, and an encrypted key's
 * wrapped blob) — possession is the boundary, not the READ bit: the daemon itself can read the master
 * key back, so code running inside the daemon could unwrap blobs. Generated keys' plaintext never
 * leaves the kernel; imported material and the master key pass through the daemon once and are wiped.
 * Destroying a key does not stop transforms already keyed with it: callers must also call
 * CryptoEngine.forgetKey().
 */
import * as keyctl from '../../../native-ffi/keyctl.js';
import { Perm } from '../../../native-ffi/keyctl.js';
import { isSyscallError } from '../../../native-ffi/syscall-error.js';
import { fromKeyctl, KERNEL_KEY_REFUSALS, KeystoreError, masterKeyRefused } from './errors.js';

export const KEY_PERM = Perm.POS_VIEW | Perm.POS_SEARCH;
const KEYRING_PERM = Perm.POS_VIEW | Perm.POS_READ | Perm.POS_WRITE | Perm.POS_SEARCH;

/** `encrypted` keys carry 20..4096 bytes (security/keys/encrypted-keys). */
export const ENCRYPTED_MIN_BYTES = 20;
export const ENCRYPTED_MAX_BYTES = 4096;

export interface KernelKeystoreOptions {
  /** Keyring description; one per daemon instance. */
  keyringName?: string;
  /** Description of the master `user` key, referenced by every blob as "user:<this>". */
  masterName?: string;
}

const DESCRIPTION = /^[A-Za-z0-9._:\-]{1,200}$/;

function checkDescription(description: string): void {
  if (!DESCRIPTION.test(description)) throw new KeystoreError('INVALID_KEY', `invalid kernel key description "${description.slice(0, 40)}"`);
}

export class KernelKeystore {
  readonly keyring: number;
  readonly masterName: string;
  private masterSerial: number | undefined;

  constructor(options: KernelKeystoreOptions = {}) {
    this.masterName = options.masterName ?? 'ringfence:master';
    try {
      const processRing = keyctl.getKeyringId(keyctl.KeySpec.PROCESS, true);
      this.keyring = keyctl.createKeyring(options.keyringName ?? 'ringfence', processRing);
      keyctl.setPerm(this.keyring, KEYRING_PERM);
    } catch (err) {
      throw fromKeyctl(err, 'creating the daemon keyring');
    }
  }

  /** Adds `payload` as a key and freezes its permissions at once. */
  private add(type: string, description: string, payload: Buffer): number {
    const serial = keyctl.addKey(type, description, payload, this.keyring);
    try {
      keyctl.setPerm(serial, KEY_PERM);
    } catch (err) {
      this.destroy(serial); // never leave a key behind with its default, wider permissions
      throw err;
    }
    return serial;
  }

  /**
   * A keystore holding `master` as its master key. The buffer is wiped whatever happens, also when
   * the keyring cannot be made (a key quota, a seccomp filter without @keyring).
   */
  static withMasterKey(master: Buffer, options: KernelKeystoreOptions = {}): KernelKeystore {
    let store: KernelKeystore;
    try {
      store = new KernelKeystore(options);
    } catch (err) {
      master.fill(0);
      throw err;
    }
    try {
      store.loadMasterKey(master); // wipes it
    } catch (err) {
      store.close();
      throw err;
    }
    return store;
  }

  /** Loads the master key (wiping the caller's buffer). Once per keystore: a second call is KEY_EXISTS. */
  loadMasterKey(material: Buffer): void {
    try {
      if (material.length < 32 || material.length > 4096) {
        throw new KeystoreError('INVALID_KEY', `the master key must be 32 to 4096 bytes, got ${material.length}`);
      }
      this.masterSerial = this.add('user', this.masterName, material);
    } catch (err) {
      throw fromKeyctl(err, 'loading the master key');
    } finally {
      material.fill(0);
    }
  }

  get hasMasterKey(): boolean {
    return this.masterSerial !== undefined;
  }

  /** The master key's serial, for AF_ALG transforms that wrap imported material (never its bytes). */
  get masterKeySerial(): number {
    this.requireMaster();
    return this.masterSerial!;
  }

  /**
   * Generates a key of `bytes` random bytes inside the kernel, wrapped by the master key. Returns its
   * serial and the wrapped blob to persist (safe to store: it is useless without the master key).
   */
  generate(description: string, bytes: number): { serial: number; blob: string } {
    checkDescription(description);
    if (!Number.isInteger(bytes) || bytes < ENCRYPTED_MIN_BYTES || bytes > ENCRYPTED_MAX_BYTES) {
      throw new KeystoreError('INVALID_KEY', `kernel-generated keys are ${ENCRYPTED_MIN_BYTES}..${ENCRYPTED_MAX_BYTES} bytes, asked for ${bytes}`);
    }
    this.requireMaster();
    let serial: number | undefined;
    try {
      serial = keyctl.addKey('encrypted', description, Buffer.from(`new default user:${this.masterName} ${bytes}`), this.keyring);
      // Read the wrapped blob while the key still has its creation-time rights, then freeze them.
      const blob = keyctl.readKey(serial).toString('latin1');
      keyctl.setPerm(serial, KEY_PERM);
      return { serial, blob };
    } catch (err) {
      if (serial !== undefined) {
        try {
          this.destroy(serial);
        } catch {
          // keep the original error
        }
      }
      throw this.encryptedError(err, `generating key ${description}`);
    }
  }

  /** Loads a generated key back from its wrapped blob. */
  load(description: string, blob: string): number {
    checkDescription(description);
    const m = /^default user:(\S+) (\d+) [0-9a-f]+$/.exec(blob);
    if (!m) throw new KeystoreError('INVALID_KEY', `key ${description}: the stored blob is malformed`);
    if (m[1] !== this.masterName) {
      throw new KeystoreError('MASTER_KEY_MISMATCH', `key ${description} is wrapped by master key "${m[1]}", this daemon uses "${this.masterName}"`);
    }
    this.requireMaster();
    try {
      return this.add('encrypted', description, Buffer.from(`load ${blob}`, 'latin1'));
    } catch (err) {
      throw this.encryptedError(err, `loading key ${description}`);
    }
  }

  /** Imports raw key material as a `logon` key (wiping the caller's buffer). */
  importRaw(description: string, material: Buffer): number {
    try {
      checkDescription(description);
      if (!description.includes(':') || description.startsWith(':')) {
        throw new KeystoreError('INVALID_KEY', `logon key descriptions need a "prefix:" (got "${description}")`);
      }
      if (material.length < 1 || material.length > 32767) {
        throw new KeystoreError('INVALID_KEY', `imported keys are 1..32767 bytes, got ${material.length}`);
      }
      return this.add('logon', description, material);
    } catch (err) {
      throw fromKeyctl(err, `importing key ${description}`);
    } finally {
      material.fill(0);
    }
  }

  /** Destroys a key: INVALIDATE unlinks it everywhere; the kernel frees it. Missing keys are fine. */
  destroy(serial: number): void {
    try {
      keyctl.invalidateKey(serial);
    } catch (err) {
      if (!isSyscallError(err, 'ENOKEY')) throw fromKeyctl(err, `destroying key ${serial}`);
    }
  }

  describe(serial: number): keyctl.KeyDescription {
    try {
      return keyctl.describeKey(serial);
    } catch (err) {
      throw fromKeyctl(err, `describing key ${serial}`);
    }
  }

  /** Destroys the keyring and every key in it. */
  close(): void {
    this.destroy(this.keyring);
    this.masterSerial = undefined;
  }

  /**
   * The errno with which the kernel now refuses the loaded master key (KERNEL_KEY_REFUSALS), or
   * undefined if it takes it. Asked of its serial, as AF_ALG keying by it asks (KEYCTL_DESCRIBE:
   * the key keeps possessor VIEW): an `encrypted` key that cannot find its master key says only
   * ENOKEY, whatever became of it.
   */
  masterKeyRefusal(): string | undefined {
    if (this.masterSerial === undefined) return undefined;
    try {
      keyctl.describeKey(this.masterSerial);
      return undefined;
    } catch (err) {
      return isSyscallError(err) && KERNEL_KEY_REFUSALS.has(err.code) ? err.code : undefined;
    }
  }

  private requireMaster(): void {
    if (this.masterSerial === undefined) throw new KeystoreError('MASTER_KEY_MISSING', 'no master key is loaded');
  }

  private encryptedError(err: unknown, what: string): KeystoreError {
    // The master key invalidated, revoked, expired or unlinked under the running daemon (review by
    // helper-210): answered INTERNAL ("not in the daemon keyring"), though a restart brings it back.
    const refused = isSyscallError(err) && KERNEL_KEY_REFUSALS.has(err.code) ? this.masterKeyRefusal() : undefined;
    if (refused) return masterKeyRefused(what, refused, err);
    if (isSyscallError(err, 'ENODEV')) {
      return new KeystoreError('KEY_TYPE_UNSUPPORTED', `${what}: this kernel has no "encrypted" key type (CONFIG_ENCRYPTED_KEYS; try modprobe encrypted-keys)`, err);
    }
    if (isSyscallError(err, 'ENOKEY')) {
      return new KeystoreError('MASTER_KEY_MISSING', `${what}: the master key "${this.masterName}" is not in the daemon keyring`, err);
    }
    if (isSyscallError(err, 'EINVAL') && err.syscall === 'add_key' && what.startsWith('loading')) {
      return new KeystoreError('MASTER_KEY_MISMATCH', `${what}: the blob does not verify under the loaded master key (wrong master key, or the blob is corrupted)`, err);
    }
    return fromKeyctl(err, what);
  }
}
