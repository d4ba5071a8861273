/**
 * Running a streaming RPC (encryptStream, decryptStream) from an Input to an Output with
 * backpressure end to end and constant memory, a progress line for large files on a terminal, and
 * no usable-looking leftovers when it fails: a file output is removed, and stdout gets a warning on
 * stderr that what it received must be discarded.
 */
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { addNote, CommandError } from './args.js';
import type { Context } from './command.js';
import type { Input, Output } from './io.js';
import { startProgress } from './progress.js';

export interface StreamJob {
  /** The progress label, e.g. "encrypt". */
  label: string;
  /** The bytes to send: the input's rest, or a ciphertext already in memory. */
  source: Input | Buffer;
  /** The input's size when known (for the progress line). */
  size: number | undefined;
  duplex: Duplex;
  output: Output;
  /** What was written to stdout before a failure, for the warning: "plaintext" or "ciphertext". */
  produces: string;
}

/**
 * Bytes per stream message: `preferred` (the SDK's default), or the daemon's max_stream_chunk_bytes
 * where that is lower: a daemon configured below it refused every CLI stream with PAYLOAD_TOO_LARGE.
 * A daemon whose status cannot be read gets `preferred`; the stream call then says what is wrong.
 */
export async function streamPieceBytes(ctx: Context, preferred: number): Promise<number> {
  const limit = await ctx.client().getStatus().then((s) => s.limits?.maxStreamChunkBytes, () => undefined);
  return limit ? Math.min(preferred, limit) : preferred;
}

export async function runStream(ctx: Context, job: StreamJob): Promise<void> {
  // Not while the output itself goes to the terminal (decrypt to the screen): each redraw would land
  // in the middle of it, and the final clear would erase its last line.
  const progress = job.output.isTTY ? undefined : startProgress(job.label, job.size, ctx.io.stderr);
  const source = Buffer.isBuffer(job.source) ? Readable.from([job.source]) : job.source.rest();
  const stages = [source, ...(progress ? [progress.counter] : []), job.duplex, job.output.stream] as const;
  // A write error names the output's temporary file; the user named another path. pipeline passes
  // any stage's error on to every other stage, so the output's own error is the one it emits first.
  let firstFailed: 'output' | 'upstream' | undefined;
  job.output.stream.once('error', () => (firstFailed ??= 'output'));
  for (const stage of stages.slice(0, -1)) (stage as Readable).once('error', () => (firstFailed ??= 'upstream'));
  let produced = 0;
  try {
    const piped = pipeline(stages as unknown as [Readable, ...Duplex[]]);
    // Counted once piped, so the listener never starts the flow itself (pipe's backpressure rules it).
    job.duplex.on('data', (chunk: Buffer) => (produced += chunk.length));
    await piped;
  } catch (caught) {
    progress?.done();
    await job.output.abort();
    // A CommandError from the output already names its path (io.ts: a FIFO swapped after its check).
    const err = firstFailed === 'output' && !(caught instanceof CommandError) ? new CommandError(`cannot write ${job.output.label}: ${(caught as NodeJS.ErrnoException).code ?? (caught as Error).message}`) : caught;
    // Said after the error itself (cli.ts prints notes last); only when something was written.
    if (job.output.inPlace && produced > 0) addNote(err, `the ${job.produces} already written to ${job.output.label} is incomplete or not authentic: discard it`);
    throw err;
  } finally {
    if (!Buffer.isBuffer(job.source)) job.source.close();
  }
  progress?.done();
  await job.output.commit();
}
