/**
 * The fake server's streaming RPCs: Session (answers after random delays, so out of order),
 * EncryptStream / DecryptStream (real AES-GCM per chunk in a format of the fake's own) and
 * HashStream. Like the daemon, the streams keep at most a few responses unflushed and stop reading
 * meanwhile, so HTTP/2 flow control pushes back on a client that reads slowly.
 */
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { HashStreamResponseSchema, type HashStreamRequest } from '../../gen/ringfence/v1/crypto_pb.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { SessionResponseSchema, type SessionRequest, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import {
  DecryptStreamResponseSchema,
  EncryptStreamResponseSchema,
  type DecryptStreamRequest,
  type DecryptStreamResponse,
  type EncryptStreamRequest,
  type EncryptStreamResponse,
} from '../../gen/ringfence/v1/stream_pb.js';
import { limitReadAhead } from './stream-io.js';
import { checkKey, FakeError, hasher, keyMaterial, open, seal } from './test-server-crypto.js';
import type { CryptoOps } from './test-server-ops.js';
import { itemStatus, toStatus, type FakeServer, type FakeStats } from './test-server.js';

const MAGIC = Buffer.from('FKST');
const MAX_UNFLUSHED = 4;

const violation = (detail: string) => new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.STREAM_PROTOCOL_VIOLATION, detail, { detail });

/** Writes responses, pausing the request side while MAX_UNFLUSHED of them wait for the client. */
function flowControlledWriter<T>(call: grpc.ServerDuplexStream<unknown, T>, stats: FakeStats): (message: T) => void {
  limitReadAhead(call);
  let unflushed = 0;
  return (message) => {
    unflushed++;
    stats.streamMaxUnflushed = Math.max(stats.streamMaxUnflushed, unflushed);
    if (unflushed >= MAX_UNFLUSHED) call.pause();
    call.write(message, () => {
      unflushed--;
      if (unflushed < MAX_UNFLUSHED && call.isPaused()) call.resume();
    });
  };
}

function chunkAad(header: Buffer, index: number, final: boolean, aad: Uint8Array): Buffer {
  const position = Buffer.alloc(5);
  position.writeUInt32BE(index);
  position[4] = final ? 1 : 0;
  return Buffer.concat([header, position, aad]);
}

function encryptStream(stats: FakeStats) {
  return (call: grpc.ServerDuplexStream<EncryptStreamRequest, EncryptStreamResponse>) => {
    const send = flowControlledWriter(call, stats);
    let header: Buffer | undefined;
    let keyName = '';
    let aad: Uint8Array = new Uint8Array(0);
    let index = 0;
    let failAfter = Infinity;
    let finalSent = false;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      call.emit('error', toStatus(err));
    };
    const sealChunk = (plaintext: Uint8Array, final: boolean) => {
      if (index >= failAfter) throw new FakeError(grpc.status.INTERNAL, ErrorReason.KERNEL_ERROR, 'AF_ALG sendmsg failed', { errno: 'EIO', call: 'sendmsg' });
      const body = seal(keyMaterial(keyName), plaintext, chunkAad(header!, index++, final, aad));
      const frame = Buffer.alloc(5);
      frame.writeUInt32BE(body.length);
      frame[4] = final ? 1 : 0;
      send(create(EncryptStreamResponseSchema, { ciphertext: Buffer.concat([frame, body]), final }));
      finalSent = final;
    };
    call.on('cancelled', () => stats.streamsCancelled++);
    call.on('data', (r: EncryptStreamRequest) => {
      if (failed) return;
      try {
        if (!header) {
          if (r.frame.case !== 'header') throw violation('the first message must be a header');
          keyName = r.frame.value.keyName;
          checkKey(keyName);
          failAfter = Number(/^fail-after-(\d+)$/.exec(keyName)?.[1] ?? Infinity);
          aad = r.frame.value.associatedData;
          header = Buffer.concat([MAGIC, Buffer.from([keyName.length]), Buffer.from(keyName), randomBytes(16)]);
          send(create(EncryptStreamResponseSchema, { ciphertext: header, keyName, keyVersion: 1 }));
          return;
        }
        if (r.frame.case !== 'chunk') throw violation('a second header');
        if (finalSent) throw violation('data after the final chunk');
        stats.chunkSizes.encrypt.push(r.frame.value.plaintext.length);
        if (r.frame.value.plaintext.length === 0 && !r.frame.value.final) return;
        sealChunk(r.frame.value.plaintext, r.frame.value.final);
      } catch (err) {
        fail(err);
      }
    });
    call.on('end', () => {
      if (failed) return;
      try {
        if (!header) throw violation('no header');
        if (!finalSent) sealChunk(new Uint8Array(0), true);
        call.end();
      } catch (err) {
        fail(err);
      }
    });
  };
}

function decryptStream(stats: FakeStats) {
  return (call: grpc.ServerDuplexStream<DecryptStreamRequest, DecryptStreamResponse>) => {
    const send = flowControlledWriter(call, stats);
    let aad: Uint8Array | undefined;
    let pending = Buffer.alloc(0);
    let header: Buffer | undefined;
    let keyName = '';
    let index = 0;
    let finalSeen = false;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      call.emit('error', toStatus(err));
    };
    const parse = () => {
      if (!header) {
        if (pending.length < 5) return;
        if (!pending.subarray(0, 4).equals(MAGIC)) throw new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, 'not a stream ciphertext', { detail: 'magic' });
        const size = 5 + pending[4]! + 16;
        if (pending.length < size) return;
        header = pending.subarray(0, size);
        keyName = header.subarray(5, 5 + pending[4]!).toString();
        checkKey(keyName);
        pending = pending.subarray(size);
      }
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(0)) {
        if (finalSeen) throw violation('data after the final chunk');
        const end = 5 + pending.readUInt32BE(0);
        const final = pending[4] === 1;
        const plaintext = open(keyMaterial(keyName), pending.subarray(5, end), chunkAad(header, index, final, aad!));
        send(create(DecryptStreamResponseSchema, { plaintext, final, ...(index === 0 ? { keyName, keyVersion: 1 } : {}) }));
        index++;
        finalSeen = final;
        pending = pending.subarray(end);
      }
      if (finalSeen && pending.length > 0) throw violation('data after the final chunk');
    };
    call.on('cancelled', () => stats.streamsCancelled++);
    call.on('data', (r: DecryptStreamRequest) => {
      if (failed) return;
      try {
        if (aad === undefined) {
          if (r.frame.case !== 'header') throw violation('the first message must be a header');
          aad = r.frame.value.associatedData;
          return;
        }
        if (r.frame.case !== 'chunk') throw violation('a second header');
        stats.chunkSizes.decrypt.push(r.frame.value.ciphertext.length);
        pending = pending.length ? Buffer.concat([pending, r.frame.value.ciphertext]) : Buffer.from(r.frame.value.ciphertext);
        parse();
      } catch (err) {
        fail(err);
      }
    });
    call.on('end', () => {
      if (failed) return;
      if (!finalSeen) return fail(new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.STREAM_TRUNCATED, 'the stream ciphertext is truncated', { chunks_received: String(index) }));
      call.end();
    });
  };
}

function hashStream(stats: FakeStats): grpc.handleClientStreamingCall<HashStreamRequest, unknown> {
  return (call, callback) => {
    let state: ReturnType<typeof hasher> | undefined;
    let bytes = 0n;
    let failed = false;
    call.on('data', (r: HashStreamRequest) => {
      if (failed) return;
      try {
        stats.chunkSizes.hash.push(r.data.length);
        if (!state) state = hasher(r.algorithm);
        else if (r.algorithm !== HashAlgorithm.UNSPECIFIED && r.algorithm !== state.algorithm) throw violation('the algorithm changed');
        state.hash.update(r.data);
        bytes += BigInt(r.data.length);
      } catch (err) {
        failed = true;
        callback(toStatus(err));
      }
    });
    call.on('end', () => {
      if (failed) return;
      if (!state) return callback(toStatus(violation('no message')));
      callback(null, create(HashStreamResponseSchema, { digest: state.hash.digest(), algorithm: state.algorithm, dataBytes: bytes }));
    });
  };
}

export function streamHandlers(stats: FakeStats): grpc.UntypedServiceImplementation {
  // Each counted in stats.calls as it starts, as the unary calls are.
  const counted = <H extends (...args: never[]) => void>(name: string, handler: H) =>
    ((...args: Parameters<H>) => {
      stats.calls[name] = (stats.calls[name] ?? 0) + 1;
      handler(...args);
    }) as unknown as H;
  return {
    encryptStream: counted('EncryptStream', encryptStream(stats)),
    decryptStream: counted('DecryptStream', decryptStream(stats)),
    hashStream: counted('HashStream', hashStream(stats)),
  };
}

/**
 * Session: each operation (top level or in `more`) answered after a random delay (so out of order)
 * by the shared ops; answers due in the same turn of the event loop go out packed in one message.
 */
export function sessionHandler(fake: FakeServer, ops: CryptoOps) {
  const { stats } = fake;
  return (call: grpc.ServerDuplexStream<SessionRequest, SessionResponse>) => {
    stats.sessionStreams++;
    stats.sessionStreamsOpen++;
    call.on('close', () => stats.sessionStreamsOpen--);
    let outstanding = 0;
    let lastId = 0n;
    let halfClosed = false;
    let dead = false;
    let due: SessionResponse[] = [];
    const flush = () => {
      const [first, ...rest] = due;
      due = [];
      if (!first || dead) return;
      first.more = rest;
      stats.sessionAnswerMessages++;
      call.write(first);
      if (halfClosed && outstanding === 0 && !fake.sessionIgnoresHalfClose) call.end();
    };
    call.on('cancelled', () => (dead = true));
    call.on('data', (message: SessionRequest) => {
      const all = [message, ...message.more];
      stats.sessionMessages++;
      stats.sessionMaxOpsPerMessage = Math.max(stats.sessionMaxOpsPerMessage, all.length);
      for (const r of all) {
        stats.sessionOps++;
        if (r.op.case === undefined) stats.sessionEmptyOps++;
        outstanding++;
        stats.sessionMaxOutstanding = Math.max(stats.sessionMaxOutstanding, outstanding);
        if (fake.sessionSwallows?.(r)) continue; // stays outstanding: the stream never ends on its own
        setTimeout(() => {
          if (dead) return;
          if (r.op.case === 'encrypt' && r.op.value.keyName === 'kill-session') {
            dead = true;
            call.emit('error', toStatus(new FakeError(grpc.status.UNAVAILABLE, ErrorReason.SHUTTING_DOWN, 'the daemon is shutting down')));
            return;
          }
          let result: unknown;
          try {
            result = r.op.case === undefined ? undefined : { case: r.op.case, value: (ops[r.op.case] as (v: unknown) => unknown)(r.op.value) };
          } catch (err) {
            result = { case: 'error', value: itemStatus(err) };
          }
          if (r.id < lastId) stats.sessionOutOfOrder++;
          lastId = r.id;
          outstanding--;
          if (due.length === 0) setImmediate(flush);
          due.push(create(SessionResponseSchema, { id: r.id, result } as Parameters<typeof create<typeof SessionResponseSchema>>[1]));
        }, fake.sessionDelayMs * (0.5 + Math.random() / 2));
      }
    });
    call.on('end', () => {
      halfClosed = true;
      if (fake.sessionIgnoresHalfClose) return;
      if (outstanding === 0 && due.length === 0 && !dead) call.end();
    });
  };
}
