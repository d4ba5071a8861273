// The daemon's wiring on the host, without AF_ALG: the real listener, connection injector,
// Connections, PolicyStore and CryptoService handlers; GenerateRandom needs only getrandom, so it
// shows a denial (unary and per session item), the audit principal, and a reload that grants it.
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { serviceDefinition } from '../../rpc/service-definition.js';
import { ErrorReason, RingfenceClient, isPermissionDenied, type RingfenceError } from '../../client/sdk/index.js';
import { cryptoServiceHandlers } from '../api/crypto-service.js';
import type { AuditEntry } from '../api/audit.js';
import { Connections } from '../identity/connections.js';
import { openListener, type Listener } from '../identity/listener.js';
import type { OpContext } from '../ops/context.js';
import { MemoryBudget } from '../api/memory-budget.js';
import { CallerSlots } from '../api/caller-slots.js';
import { Access, DENY_ALL } from './access.js';
import { PolicyStore } from './policy-store.js';
import { callerEngine } from '../engine/caller-engine.test-support.js';

const dir = mkdtempSync(join(tmpdir(), 'rf-enforce-'));
const socket = join(dir, 'rf.sock');
const policyPath = join(dir, 'policy.json');
const me = process.getuid!();
const audits: AuditEntry[] = [];
let server: grpc.Server;
let listener: Listener;
let store: PolicyStore;
let client: RingfenceClient;
/** What the daemon's log sink would say (log-sink.ts): the errno while the audit trail cannot be written. */
let auditFailing: string | undefined;

beforeAll(async () => {
  writeFileSync(policyPath, JSON.stringify({ rules: [{ principals: [`uid:${me}`], operations: ['hash'] }] }));
  // This process's uid is not an administrator here, so the policy decides.
  store = new PolicyStore({ path: policyPath, admins: new Set([me + 1]), log: () => {} });
  store.load();
  const connections = new Connections();
  const ctx = { limits: { maxPayloadBytes: 1024, maxBatchItems: 1000, maxSessionInFlight: 1024, maxSessionBufferedBytes: 1 << 20 }, authorize: DENY_ALL, engine: callerEngine(), budget: new MemoryBudget(1 << 30), hashStreamSlots: new CallerSlots(64, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller') } as unknown as OpContext;
  server = new grpc.Server();
  server.addService(serviceDefinition(CryptoService), cryptoServiceHandlers(ctx, { audit: (e) => audits.push(e), log: pino({ level: 'silent' }), access: new Access(store, (c) => connections.principalOf(c), () => auditFailing) }));
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  listener = await openListener({ socket, socketMode: 0o600, env: {}, log: () => {}, onConnection: (s) => (connections.register(s), injector.injectConnection(s)) });
  client = new RingfenceClient({ socketPath: socket });
});
afterAll(async () => {
  await client.close();
  listener.close();
  server.forceShutdown();
});

describe('enforcement through the daemon wiring', () => {
  it('denies what the policy does not grant, per call and per session item, and audits the principal', async () => {
    const err = (await client.generateRandom(8).catch((e: unknown) => e)) as RingfenceError;
    expect(isPermissionDenied(err)).toBe(true);
    expect(err.reason).toBe(ErrorReason.PERMISSION_DENIED);
    expect(err.message).toContain(`the policy does not allow uid ${me} to use random`);
    expect(err.metadata).toEqual({ operation: 'random', uid: String(me) });
    expect(audits.at(-1)).toMatchObject({ rpc: 'CryptoService/GenerateRandom', outcome: 'PERMISSION_DENIED', reason: 'PERMISSION_DENIED', principal: { uid: me, gid: process.getgid!(), pid: process.pid } });

    const session = client.session();
    const item = (await session.generateRandom(4).catch((e: unknown) => e)) as RingfenceError;
    expect(isPermissionDenied(item)).toBe(true);
    await session.close();
    expect(audits.at(-1)).toMatchObject({ rpc: 'Session/generateRandom', outcome: 'PERMISSION_DENIED', principal: { uid: me } });
  });

  it('grants it after a reload', async () => {
    writeFileSync(policyPath, JSON.stringify({ rules: [{ principals: [`uid:${me}`], operations: ['random'] }] }));
    expect(store.reload('test')).toBe(true);
    expect((await client.generateRandom(8)).data).toHaveLength(8);
    expect(audits.at(-1)).toMatchObject({ rpc: 'CryptoService/GenerateRandom', outcome: 'OK', principal: { uid: me, pid: process.pid } });
  });

  it('refuses every operation, granted or not, while the audit trail cannot be written, and serves again once it can', async () => {
    auditFailing = 'ENOSPC';
    try {
      for (const attempt of [() => client.generateRandom(8), () => client.hash(Buffer.from('x')), async () => {
        const session = client.session();
        try {
          return await session.generateRandom(4);
        } finally {
          await session.close();
        }
      }]) {
        const err = (await attempt().then(() => undefined, (e: unknown) => e)) as RingfenceError | undefined;
        expect(err?.code).toBe(grpc.status.UNAVAILABLE);
        expect(err?.reason).toBe(ErrorReason.AUDIT_UNAVAILABLE);
        expect(err?.message).toContain('cannot write its audit trail (ENOSPC)');
        expect(err?.metadata).toEqual({ errno: 'ENOSPC' });
      }
      expect(audits.at(-1)).toMatchObject({ rpc: 'Session/generateRandom', outcome: 'UNAVAILABLE', reason: 'AUDIT_UNAVAILABLE' });
    } finally {
      auditFailing = undefined;
    }
    expect((await client.generateRandom(8)).data).toHaveLength(8);
  });
});
