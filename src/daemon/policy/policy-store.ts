/**
 * The daemon's current policy: loaded at start (an invalid file refuses the start, a missing one
 * means only administrators), reloaded on SIGHUP and when the file changes (fs.watch on its
 * directory, so that editors' rename-into-place is seen, and on a symlink's target; debounced). An
 * invalid file on reload keeps
 * the policy in force and logs why; a deleted file falls back to administrators only.
 */
import { closeSync, fstatSync, lstatSync, openSync, readFileSync, realpathSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { decide, mayEverDo, parsePolicy, policyFileRefusal, readAccounts, type Accounts, type Decision, type Operation, type Policy, type Subject } from '../../policy/index.js';

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;

export interface PolicyStoreOptions {
  path: string;
  /** uids that administer everything: root and the daemon's own. */
  admins: ReadonlySet<number>;
  log: Log;
  accounts?: () => Accounts;
  debounceMs?: number;
}

/** inForce when there is no file (no file's text can equal it: it is not JSON). */
const MISSING = '\0missing';

type Loaded = { state: 'loaded'; policy: Policy; text: string } | { state: 'missing' } | { state: 'invalid'; error: string };

export class PolicyStore {
  private policy: Policy | undefined;
  private watcher: FSWatcher | undefined;
  private targetWatcher: FSWatcher | undefined;
  private targetDir: string | undefined;
  /** What is in force, so that a file change that changed nothing is not logged as a reload. */
  private inForce: string | undefined;
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
      // Owner and mode (policyFileRefusal) are checked on the descriptor that is read, so the file
      // cannot be swapped between the check and the read.
      const fd = openSync(this.opts.path, 'r');
      try {
        const refusal = policyFileRefusal(fstatSync(fd), process.getuid?.());
        if (refusal) return { state: 'invalid', error: refusal };
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
    // A watched directory also changes for other files: only a change of what is in force counts.
    if (why === 'file change' && this.inForce !== undefined && this.inForce === (r.state === 'loaded' ? r.text : r.state === 'missing' ? MISSING : undefined)) return true;
    if (r.state === 'invalid') {
      this.opts.log('error', `policy file ${this.opts.path} is invalid; keeping the policy in force: ${r.error}`, { policy: this.opts.path, trigger: why });
      return false;
    }
    this.apply(r, why);
    return true;
  }

  private apply(r: Exclude<Loaded, { state: 'invalid' }>, why: string): void {
    this.inForce = r.state === 'loaded' ? r.text : MISSING;
    if (r.state === 'missing') {
      this.policy = undefined;
      this.opts.log('warn', `no policy file at ${this.opts.path}: only root and the daemon's uid (${[...this.opts.admins].join(', ')}) may use ringfenced`, { policy: this.opts.path, trigger: why });
      return;
    }
    this.policy = r.policy;
    this.opts.log('info', `policy loaded: ${r.policy.rules.length} rules`, { policy: this.opts.path, rules: r.policy.rules.length, trigger: why });
  }

  /**
   * Watches the file's directory; changes to the file are reloaded after a quiet period. When the
   * path is a symlink (a Kubernetes ConfigMap: policy.json -> ..data/policy.json, updated by
   * swapping ..data), any change in its directory counts, and the target's directory is watched
   * too, re-resolved after every reload. A reload that finds what is in force already is silent.
   */
  watch(): void {
    const name = basename(this.opts.path);
    this.watcher = this.watchDir(dirname(this.opts.path), (file) => file === null || file === name || this.isSymlink());
    this.watchTarget();
  }

  private isSymlink(): boolean {
    try {
      return lstatSync(this.opts.path).isSymbolicLink();
    } catch {
      return false;
    }
  }

  /** Follows the symlink's target directory (none when the path is not a symlink, or dangles). */
  private watchTarget(): void {
    let target: string | undefined;
    try {
      target = this.isSymlink() ? realpathSync(this.opts.path) : undefined;
    } catch {
      target = undefined;
    }
    const dir = target && dirname(target) !== dirname(this.opts.path) ? dirname(target) : undefined;
    if (dir === this.targetDir) return;
    this.targetWatcher?.close();
    this.targetDir = dir;
    this.targetWatcher = dir ? this.watchDir(dir, (file) => file === null || file === basename(target!)) : undefined;
  }

  private watchDir(dir: string, relevant: (file: string | null) => boolean): FSWatcher | undefined {
    try {
      const w = watch(dir, { persistent: false }, (_event, file) => {
        if (!relevant(file)) return;
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => {
          this.reload('file change');
          this.watchTarget();
        }, this.opts.debounceMs ?? 200);
        this.timer.unref();
      });
      w.on('error', (err) => this.opts.log('warn', `watching ${dir} failed; reload with SIGHUP`, { err: err.message }));
      return w;
    } catch (err) {
      // The directory may not exist (no policy yet); SIGHUP still reloads.
      this.opts.log('warn', `cannot watch ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); reload the policy with SIGHUP`);
      return undefined;
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
    this.targetWatcher?.close();
  }
}
