/**
 * Running a streaming RPC (encryptStream, decryptStream) from an Input to an Output with
 * backpressure end to end and constant memory, a progress line for large files on a terminal, and
 * no usable-looking leftovers when it fails: a file output is removed, and stdout gets a warning on
 * stderr that what it received must be discarded.
 */
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { addNote } from './args.js';
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

export async function runStream(ctx: Context, job: StreamJob): Promise<void> {
  const progress = startProgress(job.label, job.size, ctx.io.stderr);
  const source = Buffer.isBuffer(job.source) ? Readable.from([job.source]) : job.source.rest();
  const stages = [source, ...(progress ? [progress.counter] : []), job.duplex, job.output.stream] as const;
  try {
    await pipeline(stages as unknown as [Readable, ...Duplex[]]);
  } catch (err) {
    progress?.done();
    await job.output.abort();
    // Said after the error itself (cli.ts prints notes last).
    if (job.output.isStdout) addNote(err, `the ${job.produces} already written to stdout is incomplete or not authentic: discard it`);
    throw err;
  } finally {
    if (!Buffer.isBuffer(job.source)) job.source.close();
  }
  progress?.done();
  await job.output.commit();
}
