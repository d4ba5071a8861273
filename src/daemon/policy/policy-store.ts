/**
 * The daemon's current policy: loaded at start (an invalid file refuses the start, a missing one
 * means only administrators), reloaded on SIGHUP and when the file changes (fs.watch on its
 * directory, so that editors' rename-into-place is seen, and a poll of its stat through symlinks;
 * debounced). An invalid file on reload keeps the policy in force and logs why; a deleted file
 * falls back to administrators only.
 */
import { unwatchFile, watch, watchFile, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname } from 'node:path';
import { decide, mayEverDo, parsePolicy, readAccounts, readPolicyFile, type Accounts, type Decision, type Operation, type Policy, type Subject } from '../../policy/index.js';

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;

export interface PolicyStoreOptions {
  path: string;
  /** uids that administer everything: root and the daemon's own. */
  admins: ReadonlySet<number>;
  log: Log;
  accounts?: () => Accounts;
  debounceMs?: number;
  /** The longest a reload waits after the first change of a burst, however many follow (default 1 s). */
  maxDelayMs?: number;
  /** How often the file's stat is polled, through symlinks (default 2 s). */
  pollMs?: number;
}

/** lastSeen when there is no file, or an invalid one (no file's text can equal these: they are not JSON). */
const MISSING = '\0missing';
const INVALID = '\0invalid:';

type Loaded = { state: 'loaded'; policy: Policy; text: string } | { state: 'missing' } | { state: 'invalid'; error: string };

export class PolicyStore {
  private policy: Policy | undefined;
  private watcher: FSWatcher | undefined;
  private polling: ((curr: Stats, prev: Stats) => void) | undefined;
  /** What the last load or reload read (text, MISSING, or INVALID + why), so that a repeat is silent. */
  private lastSeen: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the first change not yet reloaded was seen (performance.now()). */
  private burstStart: number | undefined;
  /** Bumped on every reload attempt, so tests and logs can tell reloads apart. */
  generation = 0;

  constructor(private readonly opts: PolicyStoreOptions) {}

  get path(): string {
    return this.opts.path;
  }

  get current(): Policy | undefined {
    return this.policy;
  }

  private read(): Loaded {
    let text: string;
    try {
      // Path, owner, mode, file type and size: see readPolicyFile.
      const file = readPolicyFile(this.opts.path, process.getuid?.());
      if (file.state === 'missing') return file;
      if (file.state === 'refused') return { state: 'invalid', error: file.why };
      text = file.text;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { state: 'invalid', error: `cannot read it (${code ?? (err as Error).message})` };
    }
    try {
      return { state: 'loaded', policy: parsePolicy(text, (this.opts.accounts ?? readAccounts)()), text };
    } catch (err) {
      return { state: 'invalid', error: (err as Error).message };
    }
  }

  /** The first load: throws on an invalid file, so that the daemon does not start with a policy nobody meant. */
  load(): void {
    const r = this.read();
    if (r.state === 'invalid') throw new Error(`policy file ${this.opts.path}: ${r.error}`);
    this.apply(r, 'start');
  }

  /** A reload (SIGHUP, file change): an invalid file keeps the policy in force. */
  reload(why: string): boolean {
    this.generation++;
    const r = this.read();
    // The watch and the poll may both report one change, and a poll also sees changes that leave
    // the text as it was (a touch): only a change of what was last read is applied or logged.
    const seen = r.state === 'loaded' ? r.text : r.state === 'missing' ? MISSING : `${INVALID}${r.error}`;
    const unchanged = why === 'file change' && seen === this.lastSeen;
    this.lastSeen = seen;
    if (unchanged) return r.state !== 'invalid';
    if (r.state === 'invalid') {
      this.opts.log('error', `policy file ${this.opts.path} is invalid; keeping the policy in force: ${r.error}`, { policy: this.opts.path, trigger: why });
      return false;
    }
    this.apply(r, why);
    return true;
  }

  private apply(r: Exclude<Loaded, { state: 'invalid' }>, why: string): void {
    this.lastSeen = r.state === 'loaded' ? r.text : MISSING;
    if (r.state === 'missing') {
      this.policy = undefined;
      this.opts.log('warn', `no policy file at ${this.opts.path}: only root and the daemon's uid (${[...this.opts.admins].join(', ')}) may use ringfenced`, { policy: this.opts.path, trigger: why });
      return;
    }
    this.policy = r.policy;
    this.opts.log('info', `policy loaded: ${r.policy.rules.length} rules`, { policy: this.opts.path, rules: r.policy.rules.length, trigger: why });
    for (const w of r.policy.warnings) this.opts.log('warn', `policy file ${this.opts.path}: ${w}`, { policy: this.opts.path, trigger: why });
  }

  /**
   * Watches the file's directory (an editor's rename into place is seen at once), and polls the
   * file's stat through any symlinks (fs.watchFile): a symlinked file (policy.json ->
   * ..data/policy.json, updated by swapping ..data, in directories policyPathRefusal accepts), a link re-pointed, or a target
   * edited in another directory, changes what stat reports even where no watched directory
   * changes. Changes are reloaded after a quiet period; one that leaves the text as it was is silent.
   */
  watch(): void {
    const name = basename(this.opts.path);
    const dir = dirname(this.opts.path);
    try {
      this.watcher = watch(dir, { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.changed();
      });
      this.watcher.on('error', (err) => this.opts.log('warn', `watching ${dir} failed; reload with SIGHUP`, { err: err.message }));
    } catch (err) {
      // The directory may not exist (no policy yet); the poll below and SIGHUP still reload.
      this.opts.log('warn', `cannot watch ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the policy is reloaded on SIGHUP and by a poll every ${this.pollMs} ms`);
    }
    this.polling = (curr, prev) => {
      if (curr.ino !== prev.ino || curr.dev !== prev.dev || curr.mtimeMs !== prev.mtimeMs || curr.ctimeMs !== prev.ctimeMs || curr.size !== prev.size) this.changed();
    };
    watchFile(this.opts.path, { persistent: false, interval: this.pollMs }, this.polling);
    // A change since load() (keys may take long to load) is in force before the daemon serves: a
    // reload now (found by review: a revocation waited for the debounce while calls came in). The
    // poll's first stat is its baseline, so a change between this read and that stat would go
    // unseen: one more reload after the quiet period closes that gap. Both are silent when nothing changed.
    this.reload('file change');
    this.changed();
  }

  private get pollMs(): number {
    return this.opts.pollMs ?? 2000;
  }

  /**
   * A quiet period lets a file written in several pieces be read whole; but changes that never stop
   * (a writer touching the file in a loop) must not postpone the reload for ever (found by review:
   * a revocation waited as long as the events kept coming), so it is due at most maxDelayMs after
   * the first change of a burst.
   */
  private changed(): void {
    const now = performance.now();
    this.burstStart ??= now;
    if (this.timer) clearTimeout(this.timer);
    const due = Math.min(now + (this.opts.debounceMs ?? 200), this.burstStart + (this.opts.maxDelayMs ?? 1000));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.burstStart = undefined;
      this.reload('file change');
    }, Math.max(0, due - now));
    this.timer.unref();
  }

  decide(subject: Subject, op: Operation, key?: string): Decision {
    return decide(this.policy, this.opts.admins, subject, op, key);
  }

  mayEverDo(subject: Subject, op: Operation): boolean {
    return mayEverDo(this.policy, this.opts.admins, subject, op);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.burstStart = undefined;
    this.watcher?.close();
    if (this.polling) unwatchFile(this.opts.path, this.polling);
  }
}
