/**
 * A Session refused as a whole (a message that does not decode, or over the operations limit):
 * what was answered goes out, and the session still ends at its deadline when the client does not
 * read (found by review, helper-66). A fake call that ends as grpc-js' does, and a real server.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { SessionRequestSchema } from '../../gen/ringfence/v1/session_pb.js';
import type { OpContext, OpLimits } from '../ops/context.js';
import type { AuditEntry } from './audit.js';
import type { HandlerDeps } from './handler.js';
import { sessionHandler } from './session.js';
import { MemoryBudget } from './memory-budget.js';
import { daemonServiceDefinition, UndecodableRequest } from './decode.js';
import { hashOp, randomOp as random, SESSION_LIMITS, startSession, turn, type SessionInit as Init } from './session-call.test-support.js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

const LIMITS: OpLimits = { ...SESSION_LIMITS, maxBatchItems: 64 };
const session = (deadline: number, hold: boolean) => startSession({}, hold, undefined, { deadline, endOnError: true });

describe('a session refused as a whole still ends at its deadline', () => {
  it('a client that does not read and sends a refused message is destroyed at its deadline, reads nothing more, and its bytes go back', async () => {
    const s = session(Date.now() + 150, true);
    s.send(random(1n, 16 * 1024)); // answered (made at once: 16 KiB is not sent to the pool); the write callback never comes (the client does not read)
    await vi.waitFor(() => expect(s.answers()).toHaveLength(1));
    expect(s.budget.held).toBeGreaterThan(0);
    s.call.push(new UndecodableRequest('ringfence.v1.SessionRequest')); // the whole stream is refused
    await vi.waitFor(() => expect(s.errors).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 250)); // past the deadline
    const before = s.reads();
    for (let i = 0; i < 5; i++) s.send(random(BigInt(10 + i), 8));
    for (let i = 0; i < 3; i++) await turn();
    expect({ destroyed: s.call.destroyed, held: s.budget.held, readAfter: s.reads() - before }).toEqual({ destroyed: true, held: 0, readAfter: 0 });
  });
});

describe('answers ready when the stream is refused as a whole', () => {
  it('an operation audited OK with its bytes is answered, not dropped with the stream', async () => {
    const s = session(Infinity, false);
    s.send(hashOp(1n));
    await vi.waitFor(() => expect(s.pending).toHaveLength(1));
    s.pending[0]!(Buffer.alloc(32));
    // Microtasks only (no new turn): the operation ends and is audited OK; its answer waits to be packed.
    for (let i = 0; i < 50 && s.audit.length === 0; i++) await Promise.resolve();
    expect(s.audit).toHaveLength(1);
    for (let i = 0; i < 20; i++) await Promise.resolve(); // the microtasks run out, as before the next I/O event
    expect(s.answers()).toEqual([]); // packed on the next turn (setImmediate)
    s.call.push(new UndecodableRequest('ringfence.v1.SessionRequest')); // same turn: the stream is refused
    for (let i = 0; i < 5; i++) await turn();
    expect(s.audit[0]).toMatchObject({ rpc: 'Session/hash', outcome: 'OK', bytesOut: 32 });
    expect(s.answers().map((a) => a.id)).toEqual([1n]);
  });
});


describe('over a real grpc-js server, a raw HTTP/2 client with a deadline that does not read', () => {
  it('a session refused as a whole gives its budget back at its deadline', async () => {
    const socket = join(mkdtempSync(join(tmpdir(), 'rf-session-')), 's.sock');
    const limits = { ...LIMITS, maxBatchItems: 3 };
    const budget = new MemoryBudget(1 << 30);
    const audit: AuditEntry[] = [];
    const ctx = { limits, budget, engine: callerEngine() } as unknown as OpContext;
    const deps = { audit: (e: AuditEntry) => audit.push(e), log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const server = new grpc.Server();
    server.addService(daemonServiceDefinition(CryptoService, limits.maxBatchItems), { session: sessionHandler(ctx, deps) } as never);
    await new Promise<void>((res, rej) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    const client = http2.connect('http://localhost', { createConnection: () => netConnect(socket) });
    const frame = (init: Init) => {
      const b = toBinary(SessionRequestSchema, create(SessionRequestSchema, init));
      const out = Buffer.alloc(5 + b.length);
      out.writeUInt32BE(b.length, 1);
      Buffer.from(b).copy(out, 5);
      return out;
    };
    const req = client.request({ ':method': 'POST', ':path': '/ringfence.v1.CryptoService/Session', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' });
    client.on('error', () => undefined);
    req.on('error', () => undefined);
    req.pause(); // never reads
    req.write(frame(random(1n, 1 << 20)));
    await vi.waitFor(() => expect(audit).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 50));
    expect(budget.held).toBeGreaterThan(0); // the 1 MiB answer waits for the client to read
    req.write(frame({ id: 2n, more: [{ id: 3n }, { id: 4n }, { id: 5n }] })); // over maxBatchItems: the whole stream is refused
    await vi.waitFor(() => expect(audit.map((a) => a.outcome)).toContain('RESOURCE_EXHAUSTED'));
    await new Promise((r) => setTimeout(r, 600)); // well past the 300 ms deadline
    const held = budget.held;
    req.destroy();
    client.close();
    server.forceShutdown();
    expect(held).toBe(0);
    expect(audit.filter((a) => a.rpc === 'CryptoService/Session').map((a) => a.outcome)).toEqual(['RESOURCE_EXHAUSTED']); // audited once
  });
});
