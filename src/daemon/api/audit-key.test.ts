/**
 * The key an audit line names when an operation fails on a key its request does not name (review
 * by helper-134): a unary Decrypt refused for the state of the key its ciphertext names was audited
 * with no key, though the same failure as a BatchDecrypt item named it; a ReEncrypt refused for its
 * source key was audited against its destination.
 */
import * as grpc from '@grpc/grpc-js';
import { expect, it, vi } from 'vitest';
import { cryptoServiceHandlers } from './crypto-service.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { encrypt } from '../ops/encrypt.js';
import { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { DecryptStreamRequestSchema } from '../../gen/ringfence/v1/stream_pb.js';
import { encodeStreamHeader } from '../ciphertext/stream-format.js';
import { decryptStreamHandler } from './stream-handlers.js';
import { MemoryBudget } from './memory-budget.js';

it('a unary Decrypt refused for its key\'s state names the key in its audit line, as a BatchDecrypt item does', async () => {
  const ctx = await standInContext();
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext;
  await ctx.keys.setEnabled('k', false);
  const audit = vi.fn();
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } };
  const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
  const call = (request: unknown) => ({ request, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity });
  const item = { ciphertext, associatedData: new Uint8Array(0) };
  await new Promise((r) => h.batchDecrypt!(call({ requests: [item] }), r));
  await new Promise((r) => h.decrypt!(call(item), r));
  await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(3));
  const lines = audit.mock.calls.map((c) => c[0] as { rpc: string; key?: string; outcome: string });
  const batchItem = lines.find((l) => l.rpc === 'Batch/decrypt')!;
  const unary = lines.find((l) => l.rpc === 'CryptoService/Decrypt')!;
  expect(batchItem).toMatchObject({ key: 'k', outcome: 'FAILED_PRECONDITION' });
  expect(unary).toMatchObject({ key: 'k', outcome: 'FAILED_PRECONDITION' });
});

it('a ReEncrypt refused because its SOURCE key is disabled is not audited against the destination key', async () => {
  const ctx = await standInContext();
  await ctx.keys.create({ name: 'k2', suite: 'aes-256-gcm' });
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext;
  await ctx.keys.setEnabled('k', false);
  const audit = vi.fn();
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } };
  const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
  const err = await new Promise<grpc.ServiceError>((r) => h.reEncrypt!({ request: { ciphertext, associatedData: new Uint8Array(0), destinationKeyName: 'k2' }, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity }, r as never));
  expect(err.details).toBe('key "k" is disabled; enable it to use it');
  await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
  // The line says key "k2" was refused as KEY_DISABLED; "k2" is enabled, "k" was the disabled one.
  expect(audit.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/ReEncrypt', reason: 'KEY_DISABLED', key: 'k' });
});

it('a ReEncrypt refused because its SOURCE key does not exist names no key but its id, not the existing destination (review by helper-136)', async () => {
  const ctx = await standInContext();
  await ctx.keys.create({ name: 'k2', suite: 'aes-256-gcm' });
  const ciphertext = Buffer.from((await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext!);
  ciphertext.fill(0xee, 4, 20); // the key id of a key this daemon does not have (deleted, or another daemon's)
  const audit = vi.fn();
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } };
  const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
  const err = await new Promise<grpc.ServiceError>((r) => h.reEncrypt!({ request: { ciphertext, associatedData: new Uint8Array(0), destinationKeyName: 'k2' }, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity }, r as never));
  expect(err.details).toMatch(/the key that made this ciphertext does not exist/);
  await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
  const line = audit.mock.calls[0]![0] as { key?: string; keyId?: string; reason: string };
  expect(line).toMatchObject({ reason: 'KEY_NOT_FOUND', key: undefined, keyId: 'ee'.repeat(16) });
});

/** The audit line of a DecryptStream whose first chunk is a stream header naming `keyId`. */
async function decryptStreamAudit(ctx: Awaited<ReturnType<typeof standInContext>>, keyId: Buffer): Promise<Record<string, unknown>> {
  const header = encodeStreamHeader({ suite: 'aes-256-gcm', keyId, keyVersion: 1, streamId: Buffer.alloc(16, 7) });
  const call = Object.assign(new Duplex({ objectMode: true, read() {}, write(_m, _e, cb) { cb(); } }), { getDeadline: () => Infinity });
  call.on('error', () => {});
  const audits: Record<string, unknown>[] = [];
  const deps = { audit: (a: Record<string, unknown>) => audits.push(a), log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } };
  decryptStreamHandler(ctx, deps as never)(call as never);
  call.push(create(DecryptStreamRequestSchema, { frame: { case: 'header', value: { associatedData: new Uint8Array(0) } } }));
  call.push(create(DecryptStreamRequestSchema, { frame: { case: 'chunk', value: { ciphertext: header } } }));
  call.push(null);
  await vi.waitFor(() => expect(audits).toHaveLength(1));
  return audits[0]!;
}

it('a DecryptStream refused for its key names it as a unary Decrypt does: keyId for a key that does not exist, the name for a disabled one (review by helper-139)', async () => {
  const ctx = await standInContext({ budget: new MemoryBudget(1 << 30) } as never);
  expect(await decryptStreamAudit(ctx, Buffer.alloc(16, 0xee))).toMatchObject({ reason: 'KEY_NOT_FOUND', keyId: 'ee'.repeat(16) });
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext!;
  await ctx.keys.setEnabled('k', false);
  expect(await decryptStreamAudit(ctx, Buffer.from(ciphertext.subarray(4, 20)))).toMatchObject({ key: 'k', reason: 'KEY_DISABLED' });
});
