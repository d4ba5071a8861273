/**
 * CryptoService.EncryptStream / DecryptStream: payloads of any size in authenticated chunks
 * (format: src/daemon/ciphertext/stream-format.ts). One message is processed at a time, one more is
 * read ahead (readAll), and the next is read only once no more than two answers wait unflushed
 * (limitWriteBehind, awaiting 'drain'; HTTP/2 flow control holds them while the client does not
 * read), so a stream holds a few chunks in memory whatever its size and however slow its reader;
 * a vanished client, or a passed deadline, ends the loop. Each chunk also counts against the
 * daemon-wide maxBufferedBytes until its answer is flushed (memory-budget.ts), and a DecryptStream
 * chunk sent in pieces whole, from when its body begins.
 */
import type * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { once } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { DecryptStreamResponseSchema, EncryptStreamResponseSchema, type DecryptStreamRequest, type DecryptStreamResponse, type EncryptStreamRequest, type EncryptStreamResponse } from '../../gen/ringfence/v1/stream_pb.js';
import { getRandom } from '../../../native-ffi/random.js';
import { StreamDecryptor, StreamEncryptor, StreamFormatError, encodeStreamHeader, type DecryptedChunk, type StreamHeader } from '../ciphertext/stream-format.js';
import { open, seal } from '../engine/suite-ops.js';
import type { AeadSuite } from '../../capabilities/suites.js';
import type { ResolvedVersion } from '../keys/key-manager.js';
import { ApiError, cutOff, deniedByCiphertext, ErrorReason, Status, toApiError } from './errors.js';
import { checkSize, SIZE_HINT, requireName, type OpContext } from '../ops/context.js';
import { goneMessage, whenHalfClosedEnds, type GoneReason } from './call-end.js';
import { auditPrincipal, callerKey, CUT_OFF_OUTCOME, limitWriteBehind, logForOperator, readAll, statusName, whenGone, type HandlerDeps } from './handler.js';
import { auditText } from './audit.js';
import type { Authorize } from '../policy/access.js';
import type { CryptoEngine } from '../engine/engine.js';
import { rechecked } from '../ops/key-recheck.js';

type Duplex<I, O> = grpc.ServerDuplexStream<I, O>;

/**
 * Work (bytes through the kernel and copied, plus CHUNK_WORK_BYTES a chunk) after which a stream
 * lets the event loop run other calls. One DecryptStream message may hold thousands of tiny chunks,
 * each authenticated under the caller's associated data again (up to 64 KiB each): run back to back,
 * a 1 MiB message held the daemon's only thread for the whole of it, and went on after its caller
 * left (review by helper-94). EncryptStream's tiny chunks, queued, did the same (helper-121).
 */
const PAUSE_AFTER_WORK_BYTES = 256 * 1024;
/** A chunk's fixed cost (two syscalls, a few buffers), as bytes: 64 empty chunks between pauses, as a Session message's 64 operations. */
const CHUNK_WORK_BYTES = 4 * 1024;

const violation = (message: string) => new ApiError(Status.INVALID_ARGUMENT, ErrorReason.STREAM_PROTOCOL_VIOLATION, message, { detail: message });

export function streamError(err: unknown, what: string): ApiError {
  if (err instanceof StreamFormatError) {
    switch (err.kind) {
      case 'malformed':
        return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, err.message, { detail: err.detail });
      case 'unsupported':
        return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_FORMAT_UNSUPPORTED, err.message, { format_version: String(err.formatVersion ?? '') });
      case 'truncated':
        return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.STREAM_TRUNCATED, `${err.message}; discard everything this stream returned`, { chunks_received: String(err.chunksReceived ?? 0) });
      case 'protocol':
        return violation(err.message);
      case 'too-large':
        return new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, err.message, { field: 'chunk', actual_bytes: String(err.declaredBytes), limit_bytes: String(err.limitBytes) });
    }
  }
  return toApiError(err, what);
}

/**
 * A stream's hold on the daemon-wide budget (memory-budget.ts): `reserve` waits for room before a
 * chunk is worked on and counts its bytes; `write` gives them back once its answer is flushed.
 */
interface Budgeted<O> {
  reserve(bytes: number): Promise<number>;
  /** Counts `bytes` more for work already started (an answer larger than reserved), without waiting. */
  grow(bytes: number): number;
  /** Writes with backpressure; the `reserved` bytes go back when grpc-js has flushed the message. */
  write(m: O, reserved?: number): Promise<void>;
  release(bytes: number): void;
  /** Lets other calls' work run (one event-loop turn); throws CANCELLED if this call is gone meanwhile. */
  pause(): Promise<void>;
}

/** Where a stream is: `finished` once its final chunk's answer is written (nothing then is left undone). */
interface Progress {
  finished: boolean;
}

/**
 * What a stream cut off at the end of the drain period tells its client: its answers so far are not
 * a whole ciphertext or plaintext unless its final chunk was answered (stream-format.ts: a stream
 * without its final chunk is STREAM_TRUNCATED when decrypted, and a decryption not authenticated to
 * its end must be discarded).
 */
const CUT_OFF_SAYS = {
  'CryptoService/EncryptStream': (p: Progress) =>
    p.finished
      ? 'its final chunk was answered, so the ciphertext it returned is complete and nothing is left to do'
      : 'what it returned is not a complete ciphertext (it has no final chunk): discard it and send the whole plaintext again to the restarted daemon',
  'CryptoService/DecryptStream': (p: Progress) =>
    p.finished
      ? 'its final chunk was answered, so the plaintext it returned is complete and authenticated, and nothing is left to do'
      : 'the ciphertext was not authenticated to its end: discard what it returned and send the whole stream again to the restarted daemon',
};

/** Runs one stream: writes with backpressure, answers errors with a status, audits once. */
function runStream<I, O>(call: Duplex<I, O>, ctx: OpContext, deps: HandlerDeps, rpc: keyof typeof CUT_OFF_SAYS, body: (io: Budgeted<O>, audit: { key?: string; keyId?: string; version?: number; bytesIn: number; bytesOut: number }, authorize: Authorize, engine: CryptoEngine, progress: Progress) => Promise<void>): void {
  const start = performance.now();
  const access = deps.access.forCall(call);
  const share = ctx.budget.share(callerKey(access));
  const stopped = new AbortController();
  const who = auditPrincipal(access);
  const audit: { key?: string; keyId?: string; version?: number; bytesIn: number; bytesOut: number } = { bytesIn: 0, bytesOut: 0 };
  // What the client was told, once it is known (whenGone); set at once, so the loop stops at once.
  let gone: Promise<GoneReason> | undefined;
  limitWriteBehind(call, 2);
  // Ends the loop (a pending read or 'drain' wait rejects), so a gone call stops consuming work.
  const dispose = whenGone(call, (why, told) => {
    gone = told;
    stopped.abort(new ApiError(Status.CANCELLED, ErrorReason.UNSPECIFIED, 'the client went away'));
    call.destroy(new Error(goneMessage(why, 'stream')));
  });
  // Still open when the drain period ends (drain.ts): answered UNAVAILABLE after the answers
  // already written (a reset reads as CANCELLED), and the loop ends with what it was doing.
  const progress: Progress = { finished: false };
  let cut: ApiError | undefined;
  const uncut = ctx.drain?.onCutOff(() => {
    if (gone) return;
    cut = cutOff(CUT_OFF_SAYS[rpc](progress));
    stopped.abort(cut); // a wait for room in the budget
    // grpc-js sends it once what was written is flushed, then reports the call over (whenGone),
    // which ends a read the loop waits on.
    call.emit('error', cut.toServiceError());
  });
  const io: Budgeted<O> = {
    reserve: async (bytes) => {
      // A share closes with its call; a wait it ends is the call ending, not a daemon fault.
      await share.reserve(bytes, stopped.signal).catch((err: unknown) => {
        throw err instanceof ApiError ? err : new ApiError(Status.CANCELLED, ErrorReason.UNSPECIFIED, 'the call ended while it waited for room in the buffer budget');
      });
      return bytes;
    },
    write: async (m, reserved = 0) => {
      if (cut) throw cut; // the call is answered: a write now would replace its status
      if (gone) throw new ApiError(Status.CANCELLED, ErrorReason.UNSPECIFIED, 'the client went away');
      if (!call.write(m, () => share.give(reserved))) await once(call, 'drain');
    },
    grow: (bytes) => {
      share.take(bytes);
      return bytes;
    },
    release: (bytes) => share.give(bytes),
    pause: async () => {
      await nextTurn();
      if (cut) throw cut;
      if (gone) throw new ApiError(Status.CANCELLED, ErrorReason.UNSPECIFIED, 'the client went away');
    },
  };
  // Whatever is still counted when the call is over (a write callback that never came) goes back.
  call.on('close', () => share.close());
  // The line of a call cut off: as answered, unless the client never got the answer (it did not
  // read, and its connection was closed: whenGone then says CANCELLED).
  const auditCut = () => {
    const line = (end: { outcome: string; reason?: string }) => deps.audit({ rpc, ...who, ...audit, ...end, durationMs: +(performance.now() - start).toFixed(3) });
    if (gone) void gone.then((why) => line(why === CUT_OFF_OUTCOME.outcome ? CUT_OFF_OUTCOME : { outcome: why }));
    else line(CUT_OFF_OUTCOME);
  };
  // The caller's engine: a busy key serves its callers in turns (native-ffi/fair-queue.ts).
  body(io, audit, access.authorize, ctx.engine.forCaller(callerKey(access)), progress).finally(() => {
    dispose();
    uncut?.();
    stopped.abort();
  }).then(
    () => {
      if (cut) return auditCut();
      call.end();
      // A half-close may be the first half of a client's cancel: audited once the stream tells.
      whenHalfClosedEnds(call, (cancelled) => deps.audit({ rpc, ...who, ...audit, outcome: cancelled ?? 'OK', durationMs: +(performance.now() - start).toFixed(3) }));
    },
    (err: unknown) => {
      if (cut) return auditCut();
      const e = streamError(err, rpc);
      // A client that went away (cancel, deadline) is audited so below; its stream's end is no internal error.
      if (!gone) {
        call.emit('error', e.toServiceError());
        logForOperator(deps, rpc, e);
      }
      // A gone call's error is only how its loop was ended (call.destroy), no reason worth recording.
      const auditEnd = (why: GoneReason | undefined) => deps.audit({ rpc, ...who, ...audit, outcome: why ?? statusName(e.code), ...(why ? {} : { reason: e.reasonName }), durationMs: +(performance.now() - start).toFixed(3) });
      // A stream the client half-closed (a decrypt it cut short, say) may be the first half of its cancel.
      if (gone) void gone.then(auditEnd);
      else whenHalfClosedEnds(call, auditEnd);
    },
  ).catch((err: unknown) => deps.log.error({ rpc, err }, 'failed to end a stream'));
}

export function encryptStreamHandler(ctx: OpContext, deps: HandlerDeps): grpc.handleBidiStreamingCall<EncryptStreamRequest, EncryptStreamResponse> {
  return (call) =>
    runStream(call, ctx, deps, 'CryptoService/EncryptStream', async ({ reserve, write, release, pause }, audit, authorize, engine, progress) => {
      let encryptor: StreamEncryptor | undefined;
      let r: ResolvedVersion<AeadSuite> | undefined;
      let name = '';
      let workSincePause = 0;
      for await (const m of readAll<EncryptStreamRequest>(call)) {
        if (!encryptor) {
          if (m.frame.case !== 'header') throw violation('the first EncryptStream message must be a header');
          // Named before anything can refuse it, as a unary Encrypt's line does (review by helper-143),
          // an invalid name escaped (helper-147).
          audit.key = m.frame.value.keyName ? auditText(m.frame.value.keyName) : undefined;
          name = requireName('key_name', m.frame.value.keyName);
          authorize('encrypt', name);
          const aad = checkSize('associated_data', m.frame.value.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
          // Resolving counts the first chunk's encryption (and rotates first if the version is spent).
          r = await ctx.keys.forEncrypt(name, 1);
          const resolved = r;
          let prepaid = 1;
          const header = encodeStreamHeader({ suite: r.suite.name, keyId: Buffer.from(r.key.id, 'hex'), keyVersion: r.version, streamId: getRandom(16) });
          encryptor = new StreamEncryptor({
            header,
            callerAad: Buffer.from(aad),
            maxChunkBytes: ctx.limits.maxStreamChunkBytes,
            nonce: () => getRandom(12),
            seal: async (nonce, chunkAad, plaintext, headroom) => {
              // Tiny chunks each authenticate the whole associated data again: other calls run
              // between, as in DecryptStream, even while this stream's messages are all queued.
              if (workSincePause >= PAUSE_AFTER_WORK_BYTES) {
                workSincePause = 0;
                await pause();
              }
              workSincePause += chunkAad.length + plaintext.length + CHUNK_WORK_BYTES;
              // Per chunk, as a session checks per operation: a policy reload that revokes the
              // caller's access stops a stream already running.
              authorize('encrypt', name);
              // The first chunk was counted when the stream began; it is checked as every other is
              // (found by review: a key disabled or retired meanwhile still sealed it).
              if (prepaid > 0) {
                prepaid--;
                ctx.keys.checkStreamVersion(resolved);
              } else await ctx.keys.countEncryptions(resolved, 1);
              // And again once the kernel answers (or fails: ops/key-recheck.ts): a key change
              // acknowledged while it sealed holds for this chunk too (review by helper-149).
              const sealed = await rechecked(ctx, resolved, seal(engine, resolved.suite, resolved.serials, nonce, chunkAad, plaintext, headroom), () => ctx.keys.checkStreamVersion(resolved));
              ctx.keys.checkStreamVersion(resolved);
              return sealed;
            },
          });
          audit.key = r.key.name;
          audit.version = r.version;
          audit.bytesOut += header.length;
          await write(create(EncryptStreamResponseSchema, { ciphertext: header, keyName: r.key.name, keyVersion: r.version }));
          continue;
        }
        if (m.frame.case !== 'chunk') throw violation('every EncryptStream message after the first must be a chunk');
        if (encryptor.finished) throw violation('a chunk after the final chunk');
        authorize('encrypt', name); // every message, an empty chunk too (review by helper-121)
        const plaintext = checkSize('plaintext', m.frame.value.plaintext, ctx.limits.maxStreamChunkBytes, SIZE_HINT.streamMessage);
        audit.bytesIn += plaintext.length;
        // The chunk and its ciphertext, counted until the ciphertext is flushed.
        const reserved = await reserve(2 * plaintext.length);
        const chunk = await encryptor.push(plaintext, m.frame.value.final).catch((err: unknown) => {
          release(reserved);
          throw err;
        });
        if (chunk) {
          audit.bytesOut += chunk.length;
          await write(create(EncryptStreamResponseSchema, { ciphertext: chunk, final: m.frame.value.final }), reserved);
          progress.finished = encryptor.finished;
        } else release(reserved);
      }
      if (!encryptor) throw violation('the stream ended before its header');
      if (!encryptor.finished) authorize('encrypt', name); // finish() seals the last chunk
      const last = await encryptor.finish();
      if (last) {
        audit.bytesOut += last.length;
        await write(create(EncryptStreamResponseSchema, { ciphertext: last, final: true }));
      }
      progress.finished = true;
    });
}

export function decryptStreamHandler(ctx: OpContext, deps: HandlerDeps): grpc.handleBidiStreamingCall<DecryptStreamRequest, DecryptStreamResponse> {
  return (call) =>
    runStream(call, ctx, deps, 'CryptoService/DecryptStream', async ({ reserve, grow, write, release, pause }, audit, authorize, engine, progress) => {
      let decryptor: StreamDecryptor | undefined;
      let workSincePause = 0;
      let r: ResolvedVersion<AeadSuite> | undefined;
      let first = true;
      /** Budget this stream counts for what the decryptor holds and the chunk it is reading. */
      let held = 0;
      /** A revoked access ends the stream at its next message, as at its next chunk. */
      const checkAccess = (h: StreamHeader) => {
        try {
          authorize('decrypt', r!.key.name);
        } catch (err) {
          throw deniedByCiphertext(err, h.keyId, r!.key.name); // named by id, as at the start
        }
      };
      /** Pushes input that ends at or before the end of the decryptor's current unit. */
      const pushPiece = async (d: StreamDecryptor, piece: Buffer) => {
        const chunks = await d.push(piece).catch((err: unknown) => {
          release(held);
          held = 0;
          throw err;
        });
        if (chunks.length === 0) {
          // A header, prefix or chunk body not complete yet: what it keeps alive stays counted.
          const hold = d.heldAllocation;
          if (hold > held) held += grow(hold - held);
          else if (!(d.position.unit === 'body' && d.bufferedBytes > 0)) {
            // No body part-way: only what it holds stays counted (a prefix sent in two pieces held
            // an 8 KiB slab), so that a stream holding nothing can start its next body as an
            // exempt call while others hold the budget (review by helper-124).
            release(held - hold);
            held = hold;
          }
          return;
        }
        const [chunk] = chunks as [DecryptedChunk];
        // The body's room (2 x its length) was reserved as it began: now only its plaintext and
        // this last piece stay alive until the answer is flushed. (The grow is defensive.)
        const need = piece.length + chunk.plaintext.length;
        if (need > held) held += grow(need - held);
        else {
          release(held - need);
          held = need;
        }
        const forAnswer = held;
        held = 0;
        audit.bytesOut += chunk.plaintext.length;
        await write(create(DecryptStreamResponseSchema, { plaintext: chunk.plaintext, final: chunk.final, ...(first ? { keyName: r!.key.name, keyVersion: r!.version } : {}) }), forAnswer);
        first = false;
        if (chunk.final) progress.finished = true;
      };
      for await (const m of readAll<DecryptStreamRequest>(call)) {
        if (!decryptor) {
          if (m.frame.case !== 'header') throw violation('the first DecryptStream message must be a header');
          const aad = checkSize('associated_data', m.frame.value.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
          decryptor = new StreamDecryptor({
            callerAad: Buffer.from(aad),
            maxChunkBytes: ctx.limits.maxStreamChunkBytes,
            onHeader: (h: StreamHeader) => {
              const name = ctx.keys.nameOfId(h.keyId);
              // Audited as a unary Decrypt is: the key's name, or its id when no key has it (review by helper-139).
              if (name !== undefined) audit.key = name;
              else audit.keyId = h.keyId.toString('hex');
              if (name !== undefined) {
                try {
                  authorize('decrypt', name);
                } catch (err) {
                  throw deniedByCiphertext(err, h.keyId, name);
                }
              }
              r = ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite);
              audit.key = r.key.name;
              audit.version = r.version;
            },
            // Checked again for every chunk: a key disabled, scheduled for deletion or with a raised
            // minimum decryption version, or access revoked by a policy reload, stops a stream already
            // running, as it refuses a new one.
            open: async (h, nonce, chunkAad, sealed) => {
              if (workSincePause >= PAUSE_AFTER_WORK_BYTES) {
                workSincePause = 0;
                await pause();
              }
              workSincePause += chunkAad.length + sealed.length + CHUNK_WORK_BYTES;
              checkAccess(h);
              r = ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite);
              const plaintext = await rechecked(ctx, r, open(engine, r.suite, r.serials, nonce, chunkAad, sealed), () => ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite));
              try {
                ctx.keys.forDecrypt(h.keyId, h.keyVersion, h.suite); // and once the kernel answered, as in Decrypt
              } catch (err) {
                plaintext.fill(0);
                throw err;
              }
              return plaintext;
            },
          });
          continue;
        }
        if (m.frame.case !== 'chunk') throw violation('every DecryptStream message after the first must be a chunk');
        // Every message, not only every chunk: pieces that complete none are refused too (review by helper-121).
        if (decryptor.header) checkAccess(decryptor.header);
        const bytes = checkSize('ciphertext', m.frame.value.ciphertext, ctx.limits.maxStreamChunkBytes + 64 * 1024, SIZE_HINT.streamMessage);
        audit.bytesIn += bytes.length;
        // Pushed one unit (header, chunk prefix, chunk body) at a time. A chunk body's room (its
        // ciphertext and its plaintext) is reserved whole as it begins, before a byte of it is held:
        // counted from its first piece instead, a body declared 1 MiB and sent 1 byte at a time took
        // the rest beyond the bounds, and many streams so held gigabytes (review by helper-121).
        // The pieces that complete it then never wait, so streams each holding part of a chunk
        // cannot wait for room they hold themselves.
        for (let off = 0; off < bytes.length; ) {
          const { unit, remaining } = decryptor.position;
          const piece = unit === 'done' ? bytes.subarray(off) : bytes.subarray(off, off + Math.min(remaining, bytes.length - off));
          off += piece.length;
          if (unit === 'body' && decryptor.bufferedBytes === 0) held += await reserve(2 * remaining);
          await pushPiece(decryptor, piece);
        }
      }
      if (!decryptor) throw violation('the stream ended before its header');
      // A revoked grant, not STREAM_TRUNCATED, for a stream cut short; one whose final chunk was
      // answered has nothing left to withhold.
      if (decryptor.header && !decryptor.finished) checkAccess(decryptor.header);
      decryptor.end();
    });
}
