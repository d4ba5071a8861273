/**
 * Runs one request on an operation socket: send (with control messages), read the result.
 * Small requests run synchronously: a koffi sync call costs under 1 us against 40-60 us for a round
 * trip through the libuv pool, and the kernel finishes a few KiB in microseconds. Larger ones go to the
 * pool so the event loop stays free. The threshold is EngineOptions.asyncThresholdBytes: 16 KiB of
 * input plus output, i.e. AEAD payloads up to about 8 KiB run synchronously.
 *
 * Measured with test/bench/engine-sync-async.ts in the lts guest (TCG, noisy; ratios only), AES-256-GCM:
 * at 1 KiB, async one-at-a-time ran at 0.20x the sync rate and 8-in-flight at 0.50x; at 16 KiB,
 * 0.48x and 1.22x; at 256 KiB, 1.06x and 1.22x; at 1 MiB, 0.91x and 2.55x. So below ~16 KiB a
 * sync call is cheaper than the pool round trip and blocks the loop only briefly; above it, the
 * pool wins on throughput under concurrency and keeps the loop free.
 */
import * as afAlg from '../../../native-ffi/af-alg.js';
import { EngineError, fromKernel } from './errors.js';
import { describeSpec, type Transform } from './transform.js';

export interface RequestLimits {
  maxRequestBytes: number;
  asyncThresholdBytes: number;
}

function byteLength(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/**
 * Sends `input` with `header`, reads `outLen` bytes; returns them. With `lead`, they come after `lead`
 * zeroed bytes of the same buffer, room the caller fills (a ciphertext's header) instead of copying.
 */
export async function runRequest(
  tfm: Transform,
  limits: RequestLimits,
  header: afAlg.OpHeader,
  input: Buffer[],
  outLen: number,
  lead = 0,
  owner = '',
): Promise<Buffer> {
  // Described only when something fails: building the string is measurable per small request.
  const what = () => describeSpec(tfm.spec);
  const inLen = byteLength(input);
  if (inLen > limits.maxRequestBytes) {
    throw new EngineError('PAYLOAD_TOO_LARGE', `${what()}: ${inLen} bytes exceeds the ${limits.maxRequestBytes}-byte limit of one request`, { size: { actualBytes: inLen, limitBytes: limits.maxRequestBytes } });
  }
  if (outLen > limits.maxRequestBytes + 65536) {
    throw new EngineError('PAYLOAD_TOO_LARGE', `${what()}: an answer of ${outLen} bytes exceeds the ${limits.maxRequestBytes + 65536}-byte limit of one request`, { size: { actualBytes: outLen, limitBytes: limits.maxRequestBytes + 65536 } });
  }
  const sync = inLen + outLen <= limits.asyncThresholdBytes;
  const fd = tfm.tryAcquire() ?? (await tfm.acquire(owner));
  const cap = tfm.capacityOf(fd);
  if (inLen > cap.send || outLen > cap.receive) {
    tfm.release(fd);
    // The side that does not fit (metadata must not show an actual size within its limit).
    const [actual, limit] = inLen > cap.send ? [inLen, cap.send] : [outLen, cap.receive];
    throw new EngineError('PAYLOAD_TOO_LARGE', `${what()}: ${actual} bytes exceeds what this kernel lets one request buffer (${limit}; raising it needs CAP_NET_ADMIN or net.core.wmem_max/rmem_max)`, { size: { actualBytes: actual, limitBytes: limit } });
  }
  // Never read into an empty buffer: recvmsg of 0 bytes returns at once without processing, which
  // would skip tag verification of an empty-plaintext AEAD decryption and leave the request queued.
  // Not zero-filled: the kernel overwrites all outLen bytes, and anything shorter is discarded below.
  // allocUnsafe may hand out pooled memory that held another call's bytes: the lead is zeroed.
  const whole = Buffer.allocUnsafe(lead + Math.max(outLen, 1));
  whole.fill(0, 0, lead);
  const out = whole.subarray(lead);
  let n: number;
  try {
    if (sync) {
      afAlg.sendRequest(fd, header, input);
      n = afAlg.readResult(fd, out);
    } else {
      // The owner takes its turn at the libuv pool's gate too, not only at the key's sockets.
      await afAlg.sendRequestAsync(fd, header, input, 0, owner);
      n = await afAlg.readResultAsync(fd, out, owner);
    }
  } catch (err) {
    tfm.discard(fd);
    // The kernel copies AAD || input into the output before it works in place: after a failed
    // decryption that is plaintext whose tag did not verify, after a failed encryption plaintext.
    whole.fill(0);
    throw fromKernel(err, 'request', what());
  }
  if (n !== outLen) {
    // The kernel processed only part of the request (AF_ALG does that when the output budget runs
    // short). A partial result is never returned, and the socket with leftovers is not reused.
    tfm.discard(fd);
    whole.fill(0);
    throw new EngineError('INTERNAL', `${what()}: the kernel returned ${n} of ${outLen} bytes`);
  }
  tfm.release(fd);
  return whole.subarray(0, lead + outLen);
}

/** Input that arrives over time, at a client's pace. */
export function isStreamed(input: Buffer | readonly Buffer[] | AsyncIterable<Buffer> | Iterable<Buffer>): input is AsyncIterable<Buffer> {
  return !(Buffer.isBuffer(input) || Array.isArray(input)) && Symbol.asyncIterator in input;
}

/**
 * Feeds a hash transform piece by piece (MSG_MORE keeps the state open between pieces) and reads the
 * digest. Hashing consumes data as it arrives, so no size limit applies here.
 */
export async function runDigest(
  tfm: Transform,
  limits: RequestLimits,
  input: Buffer | readonly Buffer[] | AsyncIterable<Buffer> | Iterable<Buffer>,
  digestBytes: number,
  owner = '',
): Promise<Buffer> {
  const what = () => describeSpec(tfm.spec);
  // Input that arrives over time (a client's stream) gets a socket of its own: holding a pool
  // socket while a client idles would stall every other request for this transform.
  const streamed = isStreamed(input);
  const fd = streamed ? tfm.acceptDedicated() : (tfm.tryAcquire() ?? (await tfm.acquire(owner)));
  const done = (ok: boolean) => (streamed ? tfm.closeDedicated(fd) : ok ? tfm.release(fd) : tfm.discard(fd));
  const out = Buffer.alloc(digestBytes);
  let n: number;
  // An error of the caller's input (e.g. a stream's bad message) is its own, not the kernel's.
  let inputFailed = false;
  async function* pieces(): AsyncGenerator<Buffer> {
    try {
      yield* input as AsyncIterable<Buffer>;
    } catch (err) {
      inputFailed = true;
      throw err;
    }
  }
  try {
    if (Buffer.isBuffer(input) || Array.isArray(input)) {
      const parts = Buffer.isBuffer(input) ? [input] : (input as Buffer[]);
      await send(fd, parts, 0, limits, owner);
    } else {
      for await (const chunk of pieces()) {
        if (chunk.length) await send(fd, [chunk], afAlg.MSG_MORE, limits, owner);
      }
      afAlg.sendRequest(fd, {}, [], 0);
    }
    n = afAlg.readResult(fd, out);
  } catch (err) {
    done(false);
    throw inputFailed ? err : fromKernel(err, 'request', what());
  }
  if (n !== digestBytes) {
    done(false);
    throw new EngineError('INTERNAL', `${what()}: the kernel returned a ${n}-byte digest, expected ${digestBytes}`);
  }
  done(true);
  return out;
}

async function send(fd: number, parts: Buffer[], flags: number, limits: RequestLimits, owner: string): Promise<void> {
  if (byteLength(parts) <= limits.asyncThresholdBytes) afAlg.sendRequest(fd, {}, parts, flags);
  else await afAlg.sendRequestAsync(fd, {}, parts, flags, owner);
}
