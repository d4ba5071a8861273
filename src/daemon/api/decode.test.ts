// Bytes that are no protobuf message, sent raw to the CryptoService handlers on the host: every kind
// of RPC (unary, client stream, bidi stream, session) answers INVALID_ARGUMENT, not grpc-js' INTERNAL.
import * as grpc from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { GenerateRandomRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import type { AuditEntry } from './audit.js';
import type { Access } from '../policy/access.js';
import type { OpContext } from '../ops/context.js';
import { daemonServiceDefinition } from './decode.js';

const socket = join(mkdtempSync(join(tmpdir(), 'rf-decode-')), 'rf.sock');
// Field 1 as a varint whose bytes run out: no message type decodes it.
const GARBAGE = Buffer.from([0x08, 0xde, 0xad, 0xbe, 0xef]);
const raw = (b: Buffer) => b;
const audits: AuditEntry[] = [];
let server: grpc.Server;
let client: grpc.Client;

beforeAll(async () => {
  const allowAll = { forCall: () => ({ principal: undefined, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } as unknown as Access;
  const ctx = { limits: { maxPayloadBytes: 1024, maxSessionInFlight: 4 } } as unknown as OpContext;
  server = new grpc.Server();
  server.addService(daemonServiceDefinition(CryptoService), cryptoServiceHandlers(ctx, { audit: (e) => audits.push(e), log: pino({ level: 'silent' }), access: allowAll }));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
});
afterAll(() => {
  client.close();
  server.forceShutdown();
});

function check(err: grpc.ServiceError | null): void {
  expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(err?.details).toMatch(/^the request is not a valid ringfence\.v1\.\w+ message/);
  expect(err?.details).not.toMatch(/dead|beef|3q2\+/i);
}

describe('undecodable request bodies', () => {
  it('the garbage really does not decode', () => {
    expect(() => fromBinary(GenerateRandomRequestSchema, GARBAGE)).toThrow();
  });

  it('unary: INVALID_ARGUMENT, audited', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest('/ringfence.v1.CryptoService/GenerateRandom', raw, raw, GARBAGE, (e) => resolve(e)));
    check(err);
    expect(audits.at(-1)).toMatchObject({ rpc: 'CryptoService/GenerateRandom', outcome: 'INVALID_ARGUMENT', reason: 'INVALID_FIELD' });
  });

  it('client stream: INVALID_ARGUMENT', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = client.makeClientStreamRequest('/ringfence.v1.CryptoService/HashStream', raw, raw, (e) => resolve(e));
      call.write(GARBAGE);
      call.end();
    });
    check(err);
  });

  it.each(['EncryptStream', 'DecryptStream', 'Session'])('bidi %s: INVALID_ARGUMENT', async (method) => {
    const call = client.makeBidiStreamRequest(`/ringfence.v1.CryptoService/${method}`, raw, raw);
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => resolve(e));
      call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && resolve(null));
      call.write(GARBAGE);
      call.end();
    });
    check(err);
  });
});
