/**
 * A progress line on stderr for long streaming commands: bytes done of the total, percentage and
 * rate, redrawn in place a few times a second. Only when stderr is a terminal and the input is a
 * file large enough to take a while; otherwise nothing at all is written, so scripts and logs
 * capture only the result and real errors.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Inputs at least this large show progress (smaller ones finish before a bar is useful). */
export const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;
const REDRAW_MS = 200;

export interface ProgressTarget {
  isTTY?: boolean;
  /** 0 or undefined on a terminal that reports no size (script(1), serial consoles): 80 is assumed. */
  columns?: number;
  write(s: string): unknown;
}

export interface Progress {
  /** Counts bytes done. */
  add(n: number): void;
  /** Passes bytes through unchanged, counting them. */
  readonly counter: Transform;
  /** Clears the line (the command's own messages follow on a clean line). */
  done(): void;
}

/** A Progress when `total` is known and large and `target` is a terminal, else undefined. */
export function startProgress(label: string, total: number | undefined, target: ProgressTarget = process.stderr, now: () => number = Date.now): Progress | undefined {
  if (!target.isTTY || total === undefined || total < PROGRESS_MIN_BYTES) return undefined;
  const started = now();
  let bytes = 0;
  let lastDraw = 0;
  let shown = false;
  const draw = () => {
    const elapsed = Math.max(now() - started, 1) / 1000;
    target.write(`\r\x1b[K${formatProgress(label, bytes, total, bytes / elapsed, target.columns || 80)}`);
    shown = true;
  };
  const add = (n: number) => {
    bytes += n;
    if (now() - lastDraw >= REDRAW_MS) {
      lastDraw = now();
      draw();
    }
  };
  const counter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      add(chunk.length);
      cb(null, chunk);
    },
  });
  return {
    add,
    counter,
    done() {
      if (shown) target.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** "encrypt  [=======>     ]  58%  1.2 GiB / 2.0 GiB  310 MiB/s", fitted to `columns`. */
export function formatProgress(label: string, done: number, total: number, bytesPerSecond: number, columns = 80): string {
  const fraction = total > 0 ? Math.min(done / total, 1) : 1;
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
  const tail = ` ${pct}  ${formatBytes(done)} / ${formatBytes(total)}  ${formatBytes(bytesPerSecond)}/s`;
  const width = Math.max(0, Math.min(40, columns - 1 - label.length - 3 - tail.length));
  if (width < 5) return `${label}${tail}`.slice(0, Math.max(columns - 1, 0));
  const filled = Math.floor(fraction * width);
  const bar = '='.repeat(filled) + (filled < width ? '>' : '') + ' '.repeat(Math.max(width - filled - 1, 0));
  return `${label} [${bar}]${tail}`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}
