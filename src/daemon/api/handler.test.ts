import { create, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import type { AuditEntry } from './audit.js';
import { daemonServiceDefinition } from './decode.js';
import { ApiError, ErrorReason, kernelKeyUnusable, masterKeyUnusable, Status } from './errors.js';
import { clientStreaming, unary, type HandlerDeps } from './handler.js';
import { SyscallError } from '../../../native-ffi/syscall-error.js';
import { fromKernel } from '../engine/errors.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { MemoryBudget } from './memory-budget.js';

describe('clientStreaming', () => {
  it('audits a call the client cancelled mid-stream as CANCELLED, not as an internal error', async () => {
    const audit = vi.fn();
    const error = vi.fn();
    const deps = { audit, log: { error }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    let consumed = 0;
    const handler = clientStreaming(CryptoService.method.hashStream, deps, async (messages) => {
      for await (const _ of messages) consumed++;
      return {};
    });
    const call = Object.assign(new PassThrough({ objectMode: true }), { getDeadline: () => Infinity });
    const callback = vi.fn();
    handler(call as never, callback);
    call.write({ data: new Uint8Array(3) });
    await vi.waitFor(() => expect(consumed).toBe(1));
    call.emit('cancelled');
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
    expect(audit.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'CANCELLED', bytesIn: 3 });
    expect(error).not.toHaveBeenCalled();
    expect(callback).not.toHaveBeenCalled();
  });
});

describe('unary', () => {
  const definition = daemonServiceDefinition(CryptoService, 1000);

  /** The audit line of one call whose request went through the daemon's own deserializer (decode.ts), as on the wire. */
  async function auditLine<I extends DescMessage, O extends DescMessage>(method: DescMethod & { input: I; output: O }, request: MessageInitShape<I>, answer: () => Promise<MessageInitShape<O>>): Promise<AuditEntry> {
    const audit = vi.fn();
    const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const decoded = definition[method.localName]!.requestDeserialize(Buffer.from(toBinary(method.input, create(method.input, request)))) as MessageShape<I>;
    const handler = unary(method, deps, answer);
    await new Promise((resolve) => handler({ request: decoded } as never, resolve));
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
    return audit.mock.calls[0]![0] as AuditEntry;
  }

  // Found by review (helper-69): a call the client cancelled while the daemon worked was audited OK.
  it('audits a call the client cancelled while the daemon worked as CANCELLED, and does not answer it', async () => {
    const audit = vi.fn();
    const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const call = { request: create(CryptoService.method.hash.input, { data: new Uint8Array(5) }), cancelled: false, getDeadline: () => Infinity };
    const callback = vi.fn();
    unary(CryptoService.method.hash, deps, async () => {
      call.cancelled = true; // what grpc-js sets when the client's RST_STREAM arrives
      return { digest: new Uint8Array(32) };
    })(call as never, callback);
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
    expect(audit.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/Hash', outcome: 'CANCELLED', bytesIn: 5, bytesOut: 0 });
    expect(callback).not.toHaveBeenCalled();
  });

  // bytesIn / bytesOut are the messages' bytes fields (audit.ts payloadBytes): key names and numbers are not payload.
  it('audits bytesIn as the request bytes fields and bytesOut as the answer bytes fields', async () => {
    const plaintext = randomBytes(1000);
    const associatedData = randomBytes(77);
    const ciphertext = new Uint8Array(plaintext.length + 52);
    const keyName = 'a-key-name-long-enough-to-be-noticed-if-it-were-counted';
    const encrypt = { keyName, plaintext, associatedData };
    expect(await auditLine(CryptoService.method.encrypt, encrypt, async () => ({ ciphertext, keyName, keyVersion: 3 }))).toMatchObject({
      rpc: 'CryptoService/Encrypt',
      outcome: 'OK',
      bytesIn: plaintext.length + associatedData.length,
      bytesOut: ciphertext.length,
    });

    // A refused call still counts what it was sent, and answered nothing.
    const denied = async () => {
      throw new ApiError(Status.PERMISSION_DENIED, ErrorReason.PERMISSION_DENIED, 'denied');
    };
    expect(await auditLine(CryptoService.method.encrypt, encrypt, denied)).toMatchObject({ outcome: 'PERMISSION_DENIED', bytesIn: plaintext.length + associatedData.length, bytesOut: 0 });

    // ReEncrypt: both associated data fields (the destination's is an optional bytes field) and the ciphertext.
    const source = randomBytes(300);
    const sourceAad = randomBytes(5);
    const destinationAad = randomBytes(9);
    const reEncrypted = new Uint8Array(310);
    const line = await auditLine(CryptoService.method.reEncrypt, { ciphertext: source, associatedData: sourceAad, destinationKeyName: keyName, destinationAssociatedData: destinationAad }, async () => ({
      ciphertext: reEncrypted,
      keyName,
      keyVersion: 2,
      sourceKeyName: keyName,
      sourceKeyVersion: 1,
    }));
    expect(line).toMatchObject({ rpc: 'CryptoService/ReEncrypt', outcome: 'OK', bytesIn: source.length + sourceAad.length + destinationAad.length, bytesOut: reEncrypted.length });
  });

  // The work of a call the budget has room for starts in the handler's own turn (helper-204: two
  // microtask hops before it cost the daemon's one CPU on every unary call under TCG).
  it('starts the operation of a call with room in the handler\'s turn, and answers one that throws at once', async () => {
    const audit = vi.fn();
    const deps = { audit, log: { error: vi.fn() }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const budget = { budget: new MemoryBudget(1 << 20, 1 << 20), reserve: () => 64 };
    const call = () => ({ request: create(CryptoService.method.hash.input, { data: new Uint8Array(5) }), cancelled: false, on: () => {}, getDeadline: () => Infinity });
    const fn = vi.fn(async () => ({ digest: new Uint8Array(32) }));
    const answered = new Promise((resolve) => unary(CryptoService.method.hash, deps, fn, budget)(call() as never, resolve));
    expect(fn).toHaveBeenCalledTimes(1);
    await answered;
    // Not async: it throws before any promise exists; answered and audited as any failure.
    const callback = vi.fn();
    unary(CryptoService.method.hash, deps, () => {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.UNSPECIFIED, 'no');
    }, budget)(call() as never, callback);
    await vi.waitFor(() => expect(callback).toHaveBeenCalledTimes(1));
    expect(callback.mock.calls[0]![0]).toMatchObject({ code: Status.INVALID_ARGUMENT });
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(2));
    expect(audit.mock.calls[1]![0]).toMatchObject({ rpc: 'CryptoService/Hash', outcome: 'INVALID_ARGUMENT' });
  });
});

describe('a call refused for want of descriptors or kernel memory (review by helper-197)', () => {
  it('answers RESOURCE_EXHAUSTED / DAEMON_OUT_OF_RESOURCES with errno and call, and warns the operator, throttled; no internal error is logged', async () => {
    const audit = vi.fn();
    const log = { error: vi.fn(), warn: vi.fn() };
    const deps = { audit, log, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const handler = unary(CryptoService.method.encrypt, deps, async () => {
      throw fromKernel(new SyscallError('accept4', 24), 'request', 'gcm(aes) with key 5');
    });
    const statuses: { code?: number; details?: string; metadata?: unknown }[] = [];
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve) =>
        handler({ request: create(CryptoService.method.encrypt.input, { keyName: 'k' }), getDeadline: () => Infinity } as never, (err) => {
          statuses.push(err as never);
          resolve();
        }),
      );
    }
    expect(statuses.map((s) => s.code)).toEqual([Status.RESOURCE_EXHAUSTED, Status.RESOURCE_EXHAUSTED, Status.RESOURCE_EXHAUSTED]);
    expect(statuses[0]!.details).toBe('gcm(aes) with key 5: the daemon could not open an AF_ALG socket: it has as many files open as it may (EMFILE: its RLIMIT_NOFILE, LimitNOFILE= in its systemd unit); nothing was done: retry with backoff (the daemon\'s log warns its operator)');
    expect(decodeStatusDetails(statuses[0]!.metadata as never)).toMatchObject({ reason: ErrorReason.DAEMON_OUT_OF_RESOURCES, metadata: { errno: 'EMFILE', call: 'accept4' } });
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(3));
    expect(audit.mock.calls[0]![0]).toMatchObject({ outcome: 'RESOURCE_EXHAUSTED', reason: 'DAEMON_OUT_OF_RESOURCES' });
    // One warning for the burst (the throttle's interval is 10 s), naming the errno and the call.
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/Encrypt', errno: 'EMFILE', call: 'accept4', refused: 1, refusedTotal: 1 });
    expect(log.warn.mock.calls[0]![1]).toMatch(/^no file descriptor or kernel memory for an AF_ALG socket/);
    expect(log.error).not.toHaveBeenCalled();
  });
});

describe('a call refused because the kernel refuses a key version\'s kernel key (review by helper-207)', () => {
  it('audits FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE with the key and version, and warns the operator once per key version per interval; no internal error is logged', async () => {
    const audit = vi.fn();
    const log = { error: vi.fn(), warn: vi.fn() };
    const deps = { audit, log, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const handler = (name: string, version: number) =>
      unary(CryptoService.method.encrypt, deps, async () => {
        throw kernelKeyUnusable(name, version, 'EKEYREVOKED');
      });
    const call = (h: ReturnType<typeof handler>, keyName: string) =>
      new Promise<{ code?: number; details?: string; metadata?: unknown }>((resolve) => h({ request: create(CryptoService.method.encrypt.input, { keyName }), getDeadline: () => Infinity } as never, (err) => resolve(err as never)));
    const statuses = [await call(handler('orders', 2), 'orders'), await call(handler('orders', 2), 'orders'), await call(handler('orders', 2), 'orders'), await call(handler('billing', 1), 'billing')];
    expect(statuses.map((s) => s.code)).toEqual([Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION]);
    expect(decodeStatusDetails(statuses[0]!.metadata as never)).toMatchObject({ reason: ErrorReason.KERNEL_KEY_UNUSABLE, metadata: { key_name: 'orders', key_version: '2', errno: 'EKEYREVOKED' } });
    expect(statuses[0]!.details).toMatch(/^key "orders" version 2 cannot be used: its kernel key was revoked \(EKEYREVOKED\)/);
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(4));
    expect(audit.mock.calls[0]![0]).toMatchObject({ key: 'orders', version: 2, outcome: 'FAILED_PRECONDITION', reason: 'KERNEL_KEY_UNUSABLE' });
    // One warning for each key version's burst (the throttle's interval is 10 s): orders v2, billing v1.
    expect(log.warn).toHaveBeenCalledTimes(2);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/Encrypt', key: 'orders', version: 2, errno: 'EKEYREVOKED', refused: 1, refusedTotal: 1 });
    expect(log.warn.mock.calls[0]![1]).toMatch(/^key "orders" version 2: the kernel refuses the daemon its kernel key \(EKEYREVOKED\), which ringfence did not remove or disable; .* until ringfenced is restarted/);
    expect(log.warn.mock.calls[1]![0]).toMatchObject({ key: 'billing', version: 1 });
    expect(log.error).not.toHaveBeenCalled();
  });
});

describe('a call refused because the kernel refuses the daemon\'s master key (review by helper-210)', () => {
  it('answers FAILED_PRECONDITION / KERNEL_KEY_UNUSABLE with kernel_key "master", audits the request\'s key, and warns the operator once per interval, whatever the key; no internal error is logged', async () => {
    const { KeyService } = await import('../../gen/ringfence/v1/key_service_pb.js');
    const audit = vi.fn();
    const log = { error: vi.fn(), warn: vi.fn() };
    const deps = { audit, log, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    const handler = unary(KeyService.method.createKey, deps, async () => {
      throw masterKeyUnusable('ENOKEY');
    });
    const call = (name: string) =>
      new Promise<{ code?: number; details?: string; metadata?: unknown }>((resolve) => handler({ request: create(KeyService.method.createKey.input, { name }), getDeadline: () => Infinity } as never, (err) => resolve(err as never)));
    const statuses = [await call('a'), await call('b'), await call('c')];
    expect(statuses.map((s) => s.code)).toEqual([Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION, Status.FAILED_PRECONDITION]);
    expect(decodeStatusDetails(statuses[0]!.metadata as never)).toMatchObject({ reason: ErrorReason.KERNEL_KEY_UNUSABLE, metadata: { kernel_key: 'master', errno: 'ENOKEY' } });
    expect(statuses[0]!.details).toMatch(/^the daemon's master key, which wraps every key it saves, cannot be used: it was invalidated or removed from the kernel \(ENOKEY\)/);
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(3));
    expect(audit.mock.calls[1]![0]).toMatchObject({ key: 'b', outcome: 'FAILED_PRECONDITION', reason: 'KERNEL_KEY_UNUSABLE' });
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn.mock.calls[0]![0]).toMatchObject({ rpc: 'KeyService/CreateKey', errno: 'ENOKEY', refused: 1, refusedTotal: 1 });
    expect(log.warn.mock.calls[0]![1]).toMatch(/^the kernel refuses the daemon its master key \(ENOKEY\), which ringfence did not remove: creating, importing and rotating keys .* until ringfenced is restarted, which loads the master key into the kernel again from its credential or state directory/);
    expect(log.error).not.toHaveBeenCalled();
  });
});
