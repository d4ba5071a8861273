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
import { encodeStreamHeader } from '../ciphertext/stream-format.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';
import { DecryptStreamRequestSchema, EncryptStreamRequestSchema } from '../../gen/ringfence/v1/stream_pb.js';
import { permissionDenied } from '../policy/access.js';
import { pino } from 'pino';
import { auditText, pinoAudit } from './audit.js';
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

function unaryHandlers(ctx: Awaited<ReturnType<typeof standInContext>>) {
  const audit = vi.fn();
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } };
  const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
  const call = (request: unknown) => ({ request, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity });
  return { audit, h, call, lines: () => audit.mock.calls.map((c) => c[0] as Record<string, unknown>) };
}

it('a decryption that fails to authenticate names the key it was tried against: Decrypt, a batch item, and ReEncrypt\'s source, not its destination (review by helper-143)', async () => {
  const ctx = await standInContext();
  await ctx.keys.create({ name: 'k2', suite: 'aes-256-gcm' });
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: Buffer.from('right') } as never)).ciphertext;
  const { h, call, lines } = unaryHandlers(ctx);
  const item = { ciphertext, associatedData: Buffer.from('wrong') };
  await new Promise((r) => h.decrypt!(call(item), r));
  await new Promise((r) => h.batchDecrypt!(call({ requests: [item] }), r));
  await new Promise((r) => h.reEncrypt!(call({ ...item, destinationKeyName: 'k2' }), r));
  await vi.waitFor(() => expect(lines()).toHaveLength(4));
  for (const rpc of ['CryptoService/Decrypt', 'Batch/decrypt', 'CryptoService/ReEncrypt']) {
    expect(lines().find((l) => l.rpc === rpc), rpc).toMatchObject({ key: 'k', reason: 'AUTHENTICATION_FAILED' });
  }
});

it('a ReEncrypt whose ciphertext is malformed is not audited against its destination; one whose destination is refused names the destination', async () => {
  const ctx = await standInContext();
  await ctx.keys.create({ name: 'k2', suite: 'aes-256-gcm' });
  const { h, call, lines } = unaryHandlers(ctx);
  await new Promise((r) => h.reEncrypt!(call({ ciphertext: Buffer.from('garbage-garbage-garbage-garbage-garbage-garbage'), associatedData: new Uint8Array(0), destinationKeyName: 'k2' }), r));
  await vi.waitFor(() => expect(lines()).toHaveLength(1));
  expect(lines()[0]).toMatchObject({ reason: 'CIPHERTEXT_MALFORMED', key: undefined });
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext;
  await ctx.keys.setEnabled('k2', false);
  await new Promise((r) => h.reEncrypt!(call({ ciphertext, associatedData: new Uint8Array(0), destinationKeyName: 'k2' }), r));
  await vi.waitFor(() => expect(lines()).toHaveLength(2));
  expect(lines()[1]).toMatchObject({ reason: 'KEY_DISABLED', key: 'k2' });
});

/** The audit line of an EncryptStream whose header names `keyName`. */
async function encryptStreamAudit(ctx: Awaited<ReturnType<typeof standInContext>>, keyName: string, authorize: () => void): Promise<Record<string, unknown>> {
  const call = Object.assign(new Duplex({ objectMode: true, read() {}, write(_m, _e, cb) { cb(); } }), { getDeadline: () => Infinity });
  call.on('error', () => {});
  const audits: Record<string, unknown>[] = [];
  const deps = { audit: (a: Record<string, unknown>) => audits.push(a), log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000 }, authorize }) } };
  encryptStreamHandler(ctx, deps as never)(call as never);
  call.push(create(EncryptStreamRequestSchema, { frame: { case: 'header', value: { keyName, associatedData: new Uint8Array(0) } } }));
  call.push(null);
  await vi.waitFor(() => expect(audits).toHaveLength(1));
  return audits[0]!;
}

it('an EncryptStream refused for its key names it, as a unary Encrypt does (review by helper-143)', async () => {
  const ctx = await standInContext({ budget: new MemoryBudget(1 << 30) } as never);
  await ctx.keys.setEnabled('k', false);
  expect(await encryptStreamAudit(ctx, 'k', () => {})).toMatchObject({ key: 'k', reason: 'KEY_DISABLED' });
  expect(await encryptStreamAudit(ctx, 'nosuch', () => {})).toMatchObject({ key: 'nosuch', reason: 'KEY_NOT_FOUND' });
  const deny = () => {
    throw permissionDenied({ uid: 1000 } as never, 'encrypt', 'payroll');
  };
  expect(await encryptStreamAudit(ctx, 'payroll', deny)).toMatchObject({ key: 'payroll', outcome: 'PERMISSION_DENIED' });
  // A name that is no key name: escaped, as a unary Encrypt's (review by helper-147).
  expect(await encryptStreamAudit(ctx, 'bad name\u202e', () => {})).toMatchObject({ key: 'bad name\\u202e', reason: 'INVALID_FIELD' });
});

it('a ReEncrypt refused for an invalid destination name audits that name, escaped (review by helper-147)', async () => {
  const ctx = await standInContext();
  const { h, call, lines } = unaryHandlers(ctx);
  const ciphertext = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext;
  const err = await new Promise<grpc.ServiceError>((r) => h.reEncrypt!(call({ ciphertext, associatedData: new Uint8Array(0), destinationKeyName: 'bad name\u202e' }), r as never));
  expect(err.details).toMatch(/destination_key_name is not a key name/);
  expect(err.details).not.toContain('bad name');
  await vi.waitFor(() => expect(lines()).toHaveLength(1));
  expect(lines()[0]).toMatchObject({ key: 'bad name\\u202e', reason: 'INVALID_FIELD' });
});

it('a refused key name reaches the audit line with C1 controls, bidi overrides and line separators escaped, and cut (review by helper-143)', async () => {
  const ctx = await standInContext();
  const { h, call, lines } = unaryHandlers(ctx);
  const name = 'payroll\u202e\u0085\u009b31m\u2028\\u0041{"rpc":"fake"}';
  await new Promise((r) => h.encrypt!(call({ keyName: name, plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) }), r));
  await vi.waitFor(() => expect(lines()).toHaveLength(1));
  expect(lines()[0]!.key).toBe('payroll\\u202e\\u0085\\u009b31m\\u2028\\u005cu0041{"rpc":"fake"}');
  const written: string[] = [];
  pinoAudit(pino({}, { write: (line: string) => void written.push(line) }))(lines()[0] as never);
  expect(written).toHaveLength(1);
  expect(written[0]).toMatch(/^[\x20-\x7e]*\n$/);
  expect(auditText('x'.repeat(100))).toBe(`${'x'.repeat(64)}...(100 chars)`);
});

it('a Decrypt that fails authentication, or is refused for its version, names the version its ciphertext names, as a successful one does', async () => {
  // Left from helper-185's review: the line had the key but no version, so failures against a
  // retired version could not be told from failures against the primary.
  const ctx = await standInContext();
  const first = (await encrypt(ctx, { keyName: 'k', plaintext: Buffer.from('x'), associatedData: new Uint8Array(0) } as never)).ciphertext!;
  await ctx.keys.rotate('k');
  const tampered = Buffer.from(first);
  tampered[tampered.length - 1]! ^= 1;
  const audit = vi.fn();
  const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ principal: { uid: 1000, gid: 1000, pid: 1, groups: [] }, authorize: () => {}, allows: () => true, mayEverDo: () => true }) } };
  const h = cryptoServiceHandlers(ctx, deps as never) as unknown as Record<string, (call: unknown, cb: (e: unknown, r?: unknown) => void) => void>;
  const call = (request: unknown) => ({ request, getPeer: () => '', metadata: new grpc.Metadata(), getDeadline: () => Infinity });
  await new Promise((r) => h.decrypt!(call({ ciphertext: first, associatedData: new Uint8Array(0) }), r));
  await new Promise((r) => h.decrypt!(call({ ciphertext: tampered, associatedData: new Uint8Array(0) }), r));
  await new Promise((r) => h.batchDecrypt!(call({ requests: [{ ciphertext: tampered, associatedData: new Uint8Array(0) }] }), r));
  await ctx.keys.update('k', { minDecryptionVersion: 2 });
  await new Promise((r) => h.decrypt!(call({ ciphertext: first, associatedData: new Uint8Array(0) }), r));
  await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(5));
  const lines = audit.mock.calls.map((c) => c[0] as { rpc: string; key?: string; version?: number; outcome: string; reason?: string });
  expect(lines.filter((l) => l.rpc !== 'CryptoService/BatchDecrypt').map((l) => [l.rpc, l.key, l.version, l.outcome, l.reason])).toEqual([
    ['CryptoService/Decrypt', 'k', 1, 'OK', undefined],
    ['CryptoService/Decrypt', 'k', 1, 'INVALID_ARGUMENT', 'AUTHENTICATION_FAILED'],
    ['Batch/decrypt', 'k', 1, 'INVALID_ARGUMENT', 'AUTHENTICATION_FAILED'],
    ['CryptoService/Decrypt', 'k', 1, 'FAILED_PRECONDITION', expect.any(String)],
  ]);
});
