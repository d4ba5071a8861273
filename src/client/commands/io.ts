/**
 * Binary-safe input and output for the commands: everything is Buffers, never strings.
 *
 * Input: a file or stdin, of which a command first reads a bounded head (to choose unary or
 * streaming, or to sniff a ciphertext's form) and then, if there is more, streams the rest without
 * ever holding it all. Output: stdout with backpressure, or a file written to a temporary name in
 * the same directory and renamed into place only once complete, so a failed or interrupted run
 * never leaves a partial (or unauthenticated) result under the requested name.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, createReadStream, createWriteStream, fstatSync, lstatSync, openSync, statSync, unlinkSync, type Stats, type WriteStream } from 'node:fs';
import * as fsCallbacks from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { isatty } from 'node:tty';
import { Readable, type Writable } from 'node:stream';
import { promisify } from 'node:util';
import { finished } from 'node:stream/promises';
import { CommandError } from './args.js';
import { failWriting, resolveOutput, type OutputTarget } from './output-target.js';

export interface Input {
  /** "stdin" or the path, for messages. */
  readonly label: string;
  /** Size when the input is a regular file (also stdin redirected from one), else undefined. */
  readonly size: number | undefined;
  /**
   * Reads until more than `limit` bytes arrived or the input ended. `wipeCopies` zeroes the pieces
   * once copied into the returned buffer (for key material, which the caller wipes in turn); only
   * for a single call, as it also zeroes what an earlier call returned.
   */
  readHead(limit: number, wipeCopies?: boolean): Promise<Head>;
  /** What readHead returned followed by the rest of the input, streamed with backpressure. */
  rest(): Readable;
  /** Releases the input (closes a file) when the command stops early. */
  close(): void;
}

export interface Head {
  bytes: Buffer;
  /** True when `bytes` is the whole input. */
  complete: boolean;
}

/** Opens `path` ("-" or undefined: stdin); a missing or unreadable file is an operation failure. */
export function openInput(path: string | undefined, stdin: Readable & { fd?: number } = process.stdin): Input {
  if (path === undefined || path === '-') {
    // Node reads a directory on stdin (`< /tmp`) as empty input: refuse it, as -i DIR is.
    if (isDirectory(() => fstatSync(0))) throw new CommandError('cannot read stdin: it is a directory');
    return new StreamInput(stdin, 'stdin', regularFileSize(() => fstatSync(0)));
  }
  let size: number | undefined;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new CommandError(`cannot read ${path}: it is a directory`);
    size = st.isFile() ? st.size : undefined;
  } catch (err) {
    if (err instanceof CommandError) throw err;
    throw new CommandError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return new StreamInput(createReadStream(path), path, size);
}

function isDirectory(stat: () => { isDirectory(): boolean }): boolean {
  try {
    return stat().isDirectory();
  } catch {
    return false;
  }
}

function regularFileSize(stat: () => { isFile(): boolean; size: number }): number | undefined {
  try {
    const st = stat();
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

class StreamInput implements Input {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private readonly iterator: AsyncIterator<Buffer | string>;

  constructor(
    private readonly stream: Readable,
    readonly label: string,
    readonly size: number | undefined,
  ) {
    // next() by hand, not for-await: leaving a for-await loop would destroy the stream.
    this.iterator = stream[Symbol.asyncIterator]();
    // An error reaches the iterator (next() names it) even when it came first; this listener only
    // keeps one from crashing the process before the first read: a file whose open fails (EACCES,
    // ENXIO) while hash asks GetStatus first printed Node's "Unhandled 'error' event" trace
    // (review by helper-182).
    stream.on('error', () => {});
  }

  async readHead(limit: number, wipeCopies = false): Promise<Head> {
    while (!this.ended && this.buffered <= limit) {
      const r = await this.next();
      if (r === undefined) this.ended = true;
      else if (r.length > 0) {
        this.chunks.push(r);
        this.buffered += r.length;
      }
    }
    if (this.chunks.length === 1) return { bytes: this.chunks[0]!, complete: this.ended };
    const bytes = Buffer.concat(this.chunks, this.buffered);
    const pieces = this.chunks.splice(0, this.chunks.length, bytes);
    if (wipeCopies) for (const piece of pieces) piece.fill(0);
    return { bytes, complete: this.ended };
  }

  rest(): Readable {
    const head = this.chunks.splice(0);
    const self = this;
    return Readable.from(
      (async function* () {
        yield* head;
        for (let r = await self.next(); r !== undefined; r = await self.next()) yield r;
      })(),
      { objectMode: false },
    );
  }

  close(): void {
    if (this.stream !== process.stdin) this.stream.destroy();
  }

  private async next(): Promise<Buffer | undefined> {
    let r: IteratorResult<Buffer | string>;
    try {
      r = await this.iterator.next();
    } catch (err) {
      throw new CommandError(`cannot read ${this.label}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (r.done) return undefined;
    return typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value;
  }
}

const fchown = promisify(fsCallbacks.fchown);
const fchmod = promisify(fsCallbacks.fchmod);
const fsync = promisify(fsCallbacks.fsync);

/** Where a command's result goes: stdout, or a file that appears only once complete. */
export interface Output {
  readonly label: string;
  readonly stream: Writable;
  /** Written as it goes (stdout, a device, a FIFO): what was written cannot be taken back. */
  readonly inPlace: boolean;
  /** A terminal: no progress line into it, no raw binary to it. */
  readonly isTTY: boolean;
  /** Flushes and, for a file, renames the temporary file into place. */
  commit(): Promise<void>;
  /** Removes the temporary file; stdout cannot be taken back. */
  abort(): Promise<void>;
}

// Temporary files of outputs still in progress, removed if the process is interrupted.
const pending = new Set<string>();
let hooked = false;
function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const path of pending) {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      }
      // Then die of the signal itself (its handler is gone: once), as without the cleanup: the
      // shell's $? is the same 130/143/129, but a script's loop stops on Ctrl-C only when its child
      // was killed by SIGINT, and an interactive shell starts its prompt on a new line. exit(130)
      // let `for f in *; do ringfence encrypt ... -o ...; done` go on with the next file, and the
      // prompt followed the progress line (review by helper-182).
      process.kill(process.pid, signal);
    });
  }
}

/** NAME_MAX on Linux file systems: the longest name one directory entry takes, in bytes. */
const NAME_MAX_BYTES = 255;

/**
 * The name of the temporary file an output is written to before its rename: `.NAME.<random>.ringfence-tmp`,
 * with NAME cut (whole characters) so the whole fits NAME_MAX. Uncut, an output name of more than
 * 227 bytes, which `> NAME` writes, failed with ENAMETOOLONG (review by helper-130).
 */
export function temporaryName(name: string): string {
  const suffix = `.${randomBytes(6).toString('hex')}.ringfence-tmp`;
  const room = NAME_MAX_BYTES - 1 - suffix.length;
  let cut = '';
  let bytes = 0;
  for (const ch of name) {
    bytes += Buffer.byteLength(ch);
    if (bytes > room) break;
    cut += ch;
  }
  return `.${cut}${suffix}`;
}

/**
 * Opens `path` ("-" or undefined: stdout). A new file is created 0600 (outputs may be plaintext);
 * an existing regular file is replaced atomically and keeps its mode (and, as root, its owner); a
 * symlink is followed, so its target is what is replaced (not another user's link in a sticky directory,
 * nor their FIFO there: output-target.ts); anything else that is not a directory (a
 * device such as /dev/null, a FIFO) is written in place, as stdout is — it cannot be taken back.
 * It makes checkOutput's checks first (again: the command made them before its RPC), then holds
 * the directory checked open (openDirectory), in which the file is made and renamed.
 */
export function openOutput(path: string | undefined, stdout: Writable = process.stdout): Output {
  if (path === undefined || path === '-') return streamOutput('stdout', stdout);
  const fail = failWriting(path);
  const target = resolveOutput(path, fail);
  if (target.kind === 'descriptor') {
    if (target.fd === 1) return openOutput(undefined, stdout);
    if (target.fd === 2) return streamOutput(path, process.stderr);
    return inPlaceOutput(path, fail, target.fd);
  }
  if (target.kind === 'special') return inPlaceOutput(path, fail, target.checked);
  let dirFd = openDirectory(path, target, fail);
  const name = basename(target.path);
  const inDir = (entry: string) => `/proc/self/fd/${dirFd}/${entry}`;
  const tmp = inDir(temporaryName(name));
  // Once: commit's failure aborts, and so may its caller; a descriptor closed twice could be
  // another one by then.
  const closeDirectory = () => {
    if (dirFd < 0) return;
    closeSync(dirFd);
    dirFd = -1;
  };
  hookSignals();
  pending.add(tmp);
  // autoClose false: the descriptor outlives the last write, so commit sets owner and mode on the
  // file written (destroy() closes it).
  const stream: WriteStream = createWriteStream(tmp, { flags: 'wx', mode: 0o600, autoClose: false });
  let fd = -1;
  stream.once('open', (opened: number) => (fd = opened));
  // Errors (a missing directory, a full disk) surface through write callbacks, pipeline or
  // commit; this listener only keeps an unobserved one from crashing the process.
  stream.on('error', () => {});
  return {
    label: path,
    stream,
    inPlace: false,
    isTTY: false,
    async commit() {
      try {
        if (!stream.writableEnded) stream.end();
        await finished(stream);
        // Through the descriptor written, never the name opened again: whoever may write the
        // directory (the owner of the file replaced) could have swapped the name for a link to
        // /etc/shadow, say, which root then chowned to them (review by helper-192).
        // The file it replaces keeps its mode and owner (fchmod: the umask does not apply).
        if (target.kind === 'file') {
          if (target.chown) await fchown(fd, target.chown.uid, target.chown.gid);
          await fchmod(fd, target.mode);
        }
        // Durable before it becomes visible under its name.
        await fsync(fd);
        await destroyed(stream);
        await rename(tmp, inDir(name));
        pending.delete(tmp);
        closeDirectory();
      } catch (err) {
        await this.abort();
        throw fail(err);
      }
    },
    async abort() {
      // The file is opened asynchronously: unlink only once the stream has closed, or the open
      // could create it again after the unlink.
      await destroyed(stream);
      if (dirFd >= 0) await unlink(tmp).catch(() => {});
      pending.delete(tmp);
      closeDirectory();
    },
  };
}

/** O_PATH (Linux; not in Node's fs.constants): the directory held needs no read permission, as `>` needs none. */
const O_PATH = 0o10000000;

/**
 * The directory resolveOutput checked, held open: the temporary file is created and renamed
 * through /proc/self/fd/N/NAME, which names the entry in that directory whatever its path names
 * later. By path, whoever could write a directory above it (the owner of the file replaced, say)
 * could swap it for a link to /etc once checked: root then created its file there and renamed it
 * over /etc/passwd, chowned to them (review by helper-192). Refused if it is no longer the
 * directory checked, or (replacing a file) that file is no longer in it: the owner and mode copied
 * are that file's, read through a path that could have led elsewhere.
 */
function openDirectory(path: string, target: Extract<OutputTarget, { kind: 'new' | 'file' }>, fail: (err: unknown) => CommandError): number {
  const dir = dirname(target.path);
  let fd: number;
  try {
    fd = openSync(dir, O_PATH | constants.O_DIRECTORY);
  } catch (err) {
    throw fail(err);
  }
  try {
    if (!sameObject(fstatSync(fd), target.dir)) throw new CommandError(`cannot write ${path}: directory ${dir} changed after it was checked; nothing was written`);
    if (target.kind === 'file' && !sameObject(lstatOrUndefined(`/proc/self/fd/${fd}/${basename(target.path)}`), target.checked)) {
      throw new CommandError(`cannot write ${path}: it changed after it was checked; nothing was written`);
    }
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err instanceof CommandError ? err : fail(err);
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Stdout or stderr: written as it goes, never closed. */
function streamOutput(label: string, stream: Writable): Output {
  return { label, stream, inPlace: true, isTTY: (stream as { isTTY?: boolean }).isTTY === true, commit: () => drain(stream), abort: async () => {} };
}

/** Destroys `stream` and waits until it has closed. */
async function destroyed(stream: WriteStream): Promise<void> {
  if (stream.closed) return;
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  stream.destroy();
  await closed;
}

/**
 * Whether `path` names a terminal (`-o /dev/tty`, or `/dev/stdout` on one): treated as stdout on a
 * terminal is (found by review, helper-88: the progress line was drawn into plaintext shown there).
 * Opened without becoming the controlling terminal, and without waiting.
 */
export function isTerminalPath(path: string): boolean {
  try {
    if (!statSync(path).isCharacterDevice()) return false;
    const fd = openSync(path, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
    try {
      return isatty(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

const KEEP_OPEN = { open: fsCallbacks.open, write: fsCallbacks.write, writev: fsCallbacks.writev, close: (_fd: number, done: (err: null) => void) => done(null) };

/**
 * Written as it is, like stdout, nothing to rename, nothing to take back: a device or FIFO opened
 * by path (and required to be still the one resolveOutput checked), or an open descriptor
 * (`3>>log` then `-o /dev/fd/3`) written where it is.
 */
function inPlaceOutput(path: string, fail: (err: unknown) => CommandError, at: number | Stats): Output {
  const fd = typeof at === 'number' ? at : undefined;
  // A descriptor this process was given is never closed: autoClose false still closes on destroy(),
  // which a failure calls (review by helper-108), so its close does nothing.
  const stream: WriteStream =
    typeof at === 'number'
      ? createWriteStream('', { fd: at, autoClose: false, fs: { ...KEEP_OPEN } })
      : createWriteStream(path, { fs: { open: openChecked(path, at), write: fsCallbacks.write, writev: fsCallbacks.writev, close: fsCallbacks.close } });
  stream.on('error', () => {});
  return {
    label: path,
    stream,
    inPlace: true,
    isTTY: fd === undefined ? isTerminalPath(path) : isatty(fd),
    async commit() {
      try {
        if (!stream.writableEnded) stream.end();
        await finished(stream);
      } catch (err) {
        if (err instanceof CommandError) throw err;
        throw fail(err);
      }
    },
    abort: () => destroyed(stream),
  };
}

/**
 * The stream's fs.open for a device or FIFO: hands it the descriptor only once it is the object
 * resolveOutput checked; until then the stream buffers, so nothing is written. It opens
 * asynchronously (a FIFO's open waits for a reader), when the path may name a file put there
 * since, or a link to one: opened `w` (O_CREAT|O_TRUNC) that file was truncated and written in
 * place, past the temporary file, the rename and every check on replacing a file. So the stream's
 * flags are ignored: O_WRONLY|O_NOCTTY. Links are followed (no O_NOFOLLOW), as resolveOutput
 * follows them: -o LINK to a FIFO, /dev/fd/N on a pipe, /dev/tty are written as before.
 */
function openChecked(path: string, checked: Stats) {
  return (_path: string, _flags: unknown, _mode: unknown, done: (err: Error | null, fd?: number) => void): void => {
    fsCallbacks.open(path, constants.O_WRONLY | constants.O_NOCTTY, (err, fd) => {
      if (err) return done(err);
      fsCallbacks.fstat(fd, (statErr, st) => {
        if (!statErr && sameObject(st, checked)) return done(null, fd);
        const changed = statErr ?? new CommandError(`cannot write ${path}: it changed after it was checked (now ${describeKind(st)}); nothing was written`);
        fsCallbacks.close(fd, () => done(changed));
      });
    });
  };
}

/**
 * Kind and owner too, not dev and inode alone: a file made once the FIFO is removed may get its
 * inode number at once (ext4 does), and the FIFO checks (protected_fifos) were of its owner.
 */
function sameObject(a: Stats | undefined, b: Stats): boolean {
  return a !== undefined && a.dev === b.dev && a.ino === b.ino && (a.mode & constants.S_IFMT) === (b.mode & constants.S_IFMT) && a.rdev === b.rdev && a.uid === b.uid;
}

function describeKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'another FIFO';
  if (st.isCharacterDevice()) return 'another character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'something else';
}

/** Writes `bytes` and completes the output (stdout: waits until the data is handed to the OS). */
export async function writeAll(out: Output, bytes: Uint8Array | string): Promise<void> {
  try {
    await writeChunk(out.stream, bytes);
    await out.commit();
  } catch (err) {
    await out.abort();
    throw err instanceof CommandError ? err : new CommandError(`cannot write ${out.label}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function writeChunk(stream: Writable, bytes: Uint8Array | string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    stream.once('error', onError);
    stream.write(bytes, (err) => {
      stream.off('error', onError);
      if (err) reject(err);
      else resolve();
    });
  });
}

function drain(stream: Writable): Promise<void> {
  if (!stream.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve, reject) => {
    stream.once('drain', resolve);
    stream.once('error', reject);
  });
}
