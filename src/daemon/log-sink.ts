/**
 * Where the daemon's log and audit trail go: stdout (the journal under systemd), through sonic-boom
 * as pino's default destination does, but with what a full or broken destination needs. With
 * pino's default (`ringfenced > /dev/full`, found in session 38):
 * - a failed write (ENOSPC, EIO, EDQUOT) was re-thrown as an uncaught 'error' event, so the daemon
 *   died on its first line after the log's disk filled, and then hung for good in sonic-boom 4's
 *   exit flush, which retries every error, deaf to SIGTERM (only SIGKILL ended it);
 * - an EPIPE (the journal's stream gone) ended all logging, the audit trail included, silently.
 *
 * Here a failed write marks the sink failing until a write succeeds again, and so does a full
 * buffer: the daemon refuses operations meanwhile (it could not audit them; policy/access.ts).
 * Lines not yet written stay buffered, up to MAX_BUFFERED_BYTES (beyond that they are dropped and
 * counted), and are written once the destination takes them; the sink retries every RETRY_MS.
 * stderr says so once when the failure starts and once when it ends. sonic-boom 5 (a direct dependency for this) gives up on
 * errors other than EAGAIN/EBUSY in its synchronous flush, and on those after maxWriteRetries, so
 * the flush at exit ends.
 */
import { write } from 'node:fs';
import sonicBoom, { type SonicBoomOpts } from 'sonic-boom';

// A CommonJS module: its class is a property of the default export under Node's ESM.
const { SonicBoom } = sonicBoom;
type SonicBoom = InstanceType<typeof SonicBoom>;

/** Lines kept while the destination takes nothing: a few minutes of a busy daemon's audit trail. */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
/** How often a failing destination is tried again when nothing new is written. */
export const RETRY_MS = 1000;
/** A destination that answers EAGAIN this long (sonic-boom retries every 100 ms) counts as failing. */
const MAX_EAGAIN_RETRIES = 50;

export interface LogSink {
  /** pino's destination. */
  readonly stream: SonicBoom;
  /** The errno code (`ENOSPC`, `EPIPE`, ...) while lines cannot be written, else undefined. */
  failing(): string | undefined;
  /** Lines dropped because the buffer was full, since the sink opened. */
  dropped(): number;
  /** At exit: writes what is buffered, if the destination takes it, without waiting for one that does not. */
  flushOnExit(): void;
}

export interface LogSinkOptions {
  /** Where the sink says that it fails and recovers (a line each); default: fd 2. */
  tell?: (line: string) => void;
  /**
   * Called once if the destination is gone for good (EPIPE: a pipe's or the journal's reader is
   * gone, and a pipe cannot be reopened): the daemon stops so that its service manager starts it
   * again with a new one, rather than refuse every operation until someone notices.
   */
  onLost?: (errno: string) => void;
  /** Called when writes succeed again, with the lines dropped since the last such call. */
  onRecovered?: (failedWith: string, droppedMeanwhile: number) => void;
  maxBufferedBytes?: number;
  retryMs?: number;
}

export function openLogSink(fd = 1, opts: LogSinkOptions = {}): LogSink {
  // Not process.stderr: stderr is often where stdout is (the journal's stream under systemd,
  // `> FILE 2>&1`), so it fails alike, and process.stderr re-throws a failed write as an uncaught
  // 'error' event, which ended the daemon (review by helper-171). Nor writeSync: a reader that has
  // stalled would hold the daemon's only thread. In the background then, in order, errors ignored.
  let telling: string[] | undefined;
  const toStderr = (line: string): void =>
    write(2, `${line}\n`, () => {
      const next = telling!.shift();
      if (next === undefined) telling = undefined;
      else toStderr(next);
    });
  const tell =
    opts.tell ??
    ((line: string) => {
      if (telling) return void telling.push(line);
      telling = [];
      toStderr(line);
    });
  // maxWriteRetries is sonic-boom 5's; its bundled types predate it.
  const options: SonicBoomOpts & { maxWriteRetries: number } = { fd, sync: false, maxLength: opts.maxBufferedBytes ?? MAX_BUFFERED_BYTES, maxWriteRetries: MAX_EAGAIN_RETRIES };
  const stream = new SonicBoom(options);
  let failedWith: string | undefined;
  let droppedLines = 0;
  // Dropped lines up to the last recovery, which reported them.
  let droppedReported = 0;
  let retry: NodeJS.Timeout | undefined;
  let retrying = false;

  const recovered = () => {
    const was = failedWith!;
    failedWith = undefined;
    clearInterval(retry);
    const meanwhile = droppedLines - droppedReported;
    droppedReported = droppedLines;
    tell(`ringfenced: the log and audit trail can be written again (after ${was}; ${meanwhile} lines dropped meanwhile)`);
    opts.onRecovered?.(was, meanwhile);
  };
  const fail = (code: string) => {
    if (failedWith !== undefined) return;
    failedWith = code;
    if (failedWith === 'EPIPE' && opts.onLost) {
      tell(`ringfenced: the log and audit trail's destination (fd ${fd}) is gone (EPIPE); refusing operations and stopping, so that the service manager starts ringfenced again with a new one`);
      opts.onLost(failedWith);
      return;
    }
    tell(`ringfenced: cannot write the log and audit trail to fd ${fd} (${failedWith}); refusing operations until it can be written again`);
    // Recovered once everything kept is written, not at the first write that gets through: a full
    // file system may still take a few bytes (the rest of the file's last block), which is no room
    // for the next line.
    retry = setInterval(() => {
      if (retrying) return;
      retrying = true;
      try {
        stream.flush((flushErr) => {
          retrying = false;
          if (!flushErr && failedWith !== undefined) recovered();
        });
      } catch {
        // destroyed: nothing left to retry
      }
    }, opts.retryMs ?? RETRY_MS);
    retry.unref();
  };
  stream.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'EIO'));
  stream.on('drop', () => {
    droppedLines++;
    // A full buffer fails the sink too: a destination that takes lines slower than they come need
    // not fail a write (a blocking pipe or socket whose reader stalls: the write waits), and the
    // daemon would otherwise go on serving operations whose audit lines it drops.
    fail('ENOBUFS');
  });

  return {
    stream,
    failing: () => failedWith,
    dropped: () => droppedLines,
    flushOnExit() {
      clearInterval(retry);
      try {
        stream.flushSync();
      } catch {
        // The destination takes nothing (ENOSPC, EPIPE, or EAGAIN for 5 s): what is left is lost,
        // as stderr said when it began to fail.
      }
    },
  };
}
