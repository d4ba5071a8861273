/**
 * The daemon's current policy: loaded at start (an invalid file refuses the start, a missing one
 * means only administrators), reloaded on SIGHUP and when the file changes (fs.watch on its
 * directory, so that editors' rename-into-place is seen; debounced). An invalid file on reload keeps
 * the policy in force and logs why; a deleted file falls back to administrators only.
 */
import { closeSync, fstatSync, openSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { decide, mayEverDo, parsePolicy, readAccounts, type Accounts, type Decision, type Operation, type Policy, type Subject } from '../../policy/index.js';

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;

export interface PolicyStoreOptions {
  path: string;
  /** uids that administer everything: root and the daemon's own. */
  admins: ReadonlySet<number>;
  log: Log;
  accounts?: () => Accounts;
  debounceMs?: number;
}

type Loaded = { state: 'loaded'; policy: Policy } | { state: 'missing' } | { state: 'invalid'; error: string };

export class PolicyStore {
  private policy: Policy | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
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
      // Anyone who can write the file can grant themselves every key: only root or the daemon's own
      // user may own it, and neither group nor others may write it. Checked on the descriptor that
      // is read, so the file cannot be swapped between the check and the read.
      const fd = openSync(this.opts.path, 'r');
      try {
        const st = fstatSync(fd);
        const uid = process.getuid?.();
        if ((st.mode & 0o002) !== 0) return { state: 'invalid', error: 'it is writable by every user (chmod o-w it)' };
        if ((st.mode & 0o020) !== 0) return { state: 'invalid', error: 'it is writable by its group (chmod g-w it)' };
        if (uid !== undefined && st.uid !== 0 && st.uid !== uid) return { state: 'invalid', error: `it belongs to uid ${st.uid}, not to root or the daemon's uid ${uid} (chown it)` };
        text = readFileSync(fd, 'utf8');
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { state: 'missing' };
      return { state: 'invalid', error: `cannot read it (${code ?? (err as Error).message})` };
    }
    try {
      return { state: 'loaded', policy: parsePolicy(text, (this.opts.accounts ?? readAccounts)()) };
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
    if (r.state === 'invalid') {
      this.opts.log('error', `policy file ${this.opts.path} is invalid; keeping the policy in force: ${r.error}`, { policy: this.opts.path, trigger: why });
      return false;
    }
    this.apply(r, why);
    return true;
  }

  private apply(r: Exclude<Loaded, { state: 'invalid' }>, why: string): void {
    if (r.state === 'missing') {
      this.policy = undefined;
      this.opts.log('warn', `no policy file at ${this.opts.path}: only root and the daemon's uid (${[...this.opts.admins].join(', ')}) may use ringfenced`, { policy: this.opts.path, trigger: why });
      return;
    }
    this.policy = r.policy;
    this.opts.log('info', `policy loaded: ${r.policy.rules.length} rules`, { policy: this.opts.path, rules: r.policy.rules.length, trigger: why });
  }

  /** Watches the file's directory; changes to the file are reloaded after a quiet period. */
  watch(): void {
    const name = basename(this.opts.path);
    try {
      this.watcher = watch(dirname(this.opts.path), { persistent: false }, (_event, file) => {
        if (file !== null && file !== name) return;
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => this.reload('file change'), this.opts.debounceMs ?? 200);
        this.timer.unref();
      });
      this.watcher.on('error', (err) => this.opts.log('warn', `watching ${dirname(this.opts.path)} failed; reload with SIGHUP`, { err: err.message }));
    } catch (err) {
      // The directory may not exist (no policy yet); SIGHUP still reloads.
      this.opts.log('warn', `cannot watch ${dirname(this.opts.path)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); reload the policy with SIGHUP`);
    }
  }

  decide(subject: Subject, op: Operation, key?: string): Decision {
    return decide(this.policy, this.opts.admins, subject, op, key);
  }

  mayEverDo(subject: Subject, op: Operation): boolean {
    return mayEverDo(this.policy, this.opts.admins, subject, op);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
