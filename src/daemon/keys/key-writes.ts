/**
 * The key manager's writes of the state file (key-manager.ts): each change is persisted as the
 * whole document, the keys in memory with the change applied, before it takes effect in memory;
 * a failed write changes nothing. Carries the master-key check into every write, and refuses to
 * write once the manager is closed. Callers hold the key manager's lock.
 */
import { shuttingDown } from '../api/errors.js';
import type { KeyIndex } from './key-index.js';
import type { KeyRecord, PersistedState } from './model.js';

/** The key manager's settings KeyWrites reads (KeyManagerDeps). */
export interface KeyWritesDeps {
  /** `postponingMs`: how much clock gain this write postpones deletions by (recorded only after it). */
  persist: (state: PersistedState, meta?: { postponingMs?: number }) => Promise<void>;
}

export class KeyWrites {
  /** The master-key check every write carries (set by open()). */
  masterCheck: string | null = null;
  /** Set by close(): nothing is written or indexed after it. */
  private closed = false;

  constructor(
    private readonly index: KeyIndex,
    private readonly deps: KeyWritesDeps,
    private readonly now: () => number,
  ) {}

  /** The manager is closed (close()): every write from now on, and one under way, fails. */
  close(): void {
    this.closed = true;
  }

  /** Persists `next` in place of the record with its id, then swaps it in. */
  async replace(next: KeyRecord, touch = true): Promise<KeyRecord> {
    if (touch) next.updateTime = this.now();
    await this.persistWith({ put: next });
    this.index.put(next);
    return next;
  }

  async persistWith(change: { put?: KeyRecord | KeyRecord[]; remove?: KeyRecord | KeyRecord[] } = {}, meta?: { postponingMs?: number }): Promise<void> {
    // After close() the maps are empty: a document built from them would hold no other key.
    if (this.closed) throw shuttingDown();
    const list = (x: KeyRecord | KeyRecord[] | undefined) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
    const puts = list(change.put);
    const replaced = new Set([...list(change.remove), ...puts].map((r) => r.id));
    const keys = [...this.index.records()].filter((r) => !replaced.has(r.id));
    keys.push(...puts);
    keys.sort((a, b) => (a.name < b.name ? -1 : 1));
    await this.deps.persist({ format: 1, masterCheck: this.masterCheck, keys }, meta);
    // close() ran while this was written (a stop cut the call off, or the scheduler's run): the
    // change is on disk, but nothing may be put back into a closed manager (review by helper-149:
    // the next write then held only the keys put back). Callers destroy kernel keys they made.
    if (this.closed) throw shuttingDown();
  }
}
