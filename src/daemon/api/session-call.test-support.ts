/**
 * The Session handler on a fake grpc-js call, for host tests (session.test.ts, session-refusal.test.ts):
 * GenerateRandom needs no AF_ALG, so it stands for an operation that works; Hash waits on `pending`
 * until the test answers it, so a test decides when an operation ends.
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Duplex } from 'node:stream';
import { vi } from 'vitest';
import { SessionRequestSchema, type SessionRequest, type SessionResponse } from '../../gen/ringfence/v1/session_pb.js';
import type { OpContext, OpLimits } from '../ops/context.js';
import type { AuditEntry } from './audit.js';
import type { HandlerDeps } from './handler.js';
import { MemoryBudget } from './memory-budget.js';
import type { Drain } from './drain.js';
import { sessionHandler } from './session.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

export const SESSION_LIMITS: OpLimits = {
  maxPayloadBytes: 1 << 20,
  maxAssociatedDataBytes: 65_536,
  maxStreamChunkBytes: 1 << 20,
  maxBatchItems: 1000,
  maxSessionInFlight: 1024,
  maxSessionBufferedBytes: 16 << 20,
  maxMessageBytes: 4 << 20,
};

export type SessionInit = MessageInitShape<typeof SessionRequestSchema>;
export const randomOp = (id: bigint, lengthBytes: number, more: SessionInit[] = []): SessionInit => ({ id, op: { case: 'generateRandom', value: { lengthBytes } }, more });
export const hashOp = (id: bigint): SessionInit => ({ id, op: { case: 'hash', value: { data: new Uint8Array(8) } } });
export const turn = () => new Promise((r) => setImmediate(r));

export interface FakeCallOptions {
  /** The call's deadline (Date.now() ms); default none. */
  deadline?: number;
  /** End the call on 'error', as grpc-js does when it sends the status (after the answers already written). */
  endOnError?: boolean;
  /** The daemon's stop (drain.ts). */
  drain?: Drain;
}

/** The handler on a fake call; `hold` keeps write callbacks (a client that does not read). */
export function startSession(limits: Partial<OpLimits> = {}, hold = false, budget = new MemoryBudget(1 << 30), opts: FakeCallOptions = {}) {
  const audit: AuditEntry[] = [];
  let started = 0;
  let maxRunning = 0;
  const pending: ((digest: Buffer) => void)[] = [];
  const engine = callerEngine({ digest: () => new Promise<Buffer>((r) => pending.push(r)) });
  const ctx = { limits: { ...SESSION_LIMITS, ...limits }, budget, engine, suiteStatus: () => 'available', drain: opts.drain } as unknown as OpContext;
  // Every operation asks first (so this counts starts), and is audited when it ends.
  const authorize = () => {
    started++;
    maxRunning = Math.max(maxRunning, started - audit.length);
  };
  const deps = { audit: (e: AuditEntry) => audit.push(e), log: { error: vi.fn() }, access: { forCall: () => ({ authorize }) } } as unknown as HandlerDeps;
  const written: SessionResponse[] = [];
  const held: (() => void)[] = [];
  const call = Object.assign(
    new Duplex({
      objectMode: true,
      read() {},
      write(m: SessionResponse, _e, cb) {
        written.push(m);
        if (hold) held.push(cb);
        else cb();
      },
    }),
    { getDeadline: () => opts.deadline ?? Infinity },
  );
  const errors: unknown[] = [];
  call.on('error', (e) => {
    errors.push(e);
    if (opts.endOnError) call.end();
  });
  let ended = false;
  call.on('finish', () => (ended = true));
  let reads = 0;
  call.on('data', () => reads++);
  sessionHandler(ctx, deps)(call as never);
  const send = (init: SessionInit) => call.push(create(SessionRequestSchema, init) as SessionRequest);
  const answers = () => written.flatMap((m) => [m, ...m.more]);
  return { call, send, written, answers, held, audit, errors, pending, budget, ended: () => ended, reads: () => reads, maxRunning: () => maxRunning };
}
