/**
 * The key manager's keys in memory: the records by name and by id, each version's kernel serials,
 * the versions this kernel could not load, and the encryptions counted per version. Changes come
 * from the key manager (key-manager.ts) once they are persisted; this only keeps them together.
 */
import { ApiError, ErrorReason, Status, keyNotFound } from '../api/errors.js';
import type { MaterialFingerprints } from './fingerprints.js';
import { countKeys, type KeyCounts } from './key-caps.js';
import type { KeyMaterial } from './material.js';
import type { KeyRecord } from './model.js';

export class KeyIndex {
  private readonly byName = new Map<string, KeyRecord>();
  /** byName's keys in order, for list(); undefined after a key was added or removed. */
  private sortedNames: string[] | undefined;
  private readonly byId = new Map<string, KeyRecord>();
  /** Kernel serials per key id, per version (index = version - 1). */
  private readonly serials = new Map<string, number[][]>();
  /**
   * Versions this kernel could not load ("id:version" -> why): imported material sealed with a
   * suite it refuses. The key stays listed, and its other versions usable; using it says why not.
   */
  private readonly unloadable = new Map<string, string>();
  /** Encryptions made per key id, per version (in memory; persisted as reservations). */
  private readonly counts = new Map<string, number[]>();

  /** `material` destroys a removed key's kernel keys; `fingerprints` forgets its imported material. */
  constructor(private readonly deps: { material: KeyMaterial; fingerprints: MaterialFingerprints }) {}

  get size(): number {
    return this.byName.size;
  }

  /** The counts the key caps check (countKeys), daemon-wide and `uid`'s, whether or not the caps hold it. */
  keyCounts(uid: number | undefined): KeyCounts {
    return countKeys(this.byId.values(), uid);
  }

  /** Every key (by id), in the order they were added. */
  records(): IterableIterator<KeyRecord> {
    return this.byId.values();
  }

  /** Every key (by name), in the order they were added: the due work's order. */
  named(): IterableIterator<KeyRecord> {
    return this.byName.values();
  }

  get(name: string): KeyRecord {
    const record = this.byName.get(name);
    if (!record) throw keyNotFound(name);
    return record;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  withId(id: string): KeyRecord | undefined {
    return this.byId.get(id);
  }

  hasId(id: string): boolean {
    return this.byId.has(id);
  }

  /**
   * Keys named after `after`, in name order, at most `limit`; only those `visible` lets through.
   * The sorted names are kept between calls (a page costs a binary search and its own keys, not a
   * sort of every key), and made again after a key is added or removed.
   */
  list(after: string, limit: number, visible: (name: string) => boolean = () => true): { keys: KeyRecord[]; more: boolean } {
    const names = (this.sortedNames ??= [...this.byName.keys()].sort());
    let lo = 0;
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (names[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    const keys: KeyRecord[] = [];
    for (let i = lo; i < names.length; i++) {
      if (!visible(names[i]!)) continue;
      if (keys.length === limit) return { keys, more: true };
      keys.push(this.byName.get(names[i]!)!);
    }
    return { keys, more: false };
  }

  /** The name of the key with this id (from a ciphertext), if it exists: access is checked by name before anything else. */
  nameOfId(keyId: Buffer): string | undefined {
    return this.byId.get(keyId.toString('hex'))?.name;
  }

  /** Puts `record` in place of the record with its id (persisted first), or adds it. */
  put(record: KeyRecord): void {
    this.setByName(record);
    this.byId.set(record.id, record);
  }

  private setByName(record: KeyRecord): void {
    if (!this.byName.has(record.name)) this.sortedNames = undefined;
    this.byName.set(record.name, record);
  }

  /**
   * `next`, a rotation of a key already indexed, with its new version's kernel serials and a count
   * of 0. All at once, with no await in between: nobody may see the new version before its kernel
   * keys and its count are there (forEncrypt's fast path would resolve it without serials).
   */
  addVersion(next: KeyRecord, serials: number[]): void {
    this.serials.get(next.id)!.push(serials);
    this.counts.get(next.id)!.push(0);
    this.put(next);
  }

  /** The kernel serials of a version, or FAILED_PRECONDITION when this kernel could not load it. */
  serialsOf(record: KeyRecord, version: number): number[] {
    const why = this.unloadable.get(`${record.id}:${version}`);
    if (why !== undefined) {
      throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_RESTRICTED_BY_KERNEL, `key "${record.name}" version ${version} is not loaded on this kernel: ${why}`, {
        key_name: record.name,
        key_version: String(version),
      });
    }
    return this.serials.get(record.id)![version - 1]!;
  }

  /** A version this kernel could not load (open()), and why. */
  markUnloadable(id: string, version: number, why: string): void {
    this.unloadable.set(`${id}:${version}`, why);
  }

  /** The encryptions counted per version of the key with this id (index = version - 1): counted in place. */
  countsOf(id: string): number[] | undefined {
    return this.counts.get(id);
  }

  encryptionCount(record: KeyRecord, version: number): number {
    return this.counts.get(record.id)?.[version - 1] ?? 0;
  }

  index(record: KeyRecord, serials: number[][], counts: number[]): void {
    this.setByName(record);
    this.byId.set(record.id, record);
    this.serials.set(record.id, serials);
    this.counts.set(record.id, counts);
  }

  unindex(record: KeyRecord): void {
    for (const s of this.serials.get(record.id) ?? []) this.deps.material.destroy(s);
    this.byName.delete(record.name);
    this.sortedNames = undefined;
    this.byId.delete(record.id);
    this.serials.delete(record.id);
    this.counts.delete(record.id);
    for (const v of record.versions) this.unloadable.delete(`${record.id}:${v.version}`);
    this.deps.fingerprints.removeKey(record.id);
  }

  /** Unindexes every key, destroying its kernel keys (close()). */
  clear(): void {
    for (const record of [...this.byId.values()]) this.unindex(record);
  }
}
