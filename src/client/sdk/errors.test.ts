import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  batchResults,
  ErrorReason,
  isAlreadyExists,
  isAuthenticationFailed,
  isCancelled,
  isDaemonUnreachable,
  isDeadlineExceeded,
  isFailedPrecondition,
  isInternal,
  isInvalidArgument,
  isNotFound,
  isPermissionDenied,
  isResourceExhausted,
  isUnavailable,
  isUnimplemented,
  RingfenceClient,
  RingfenceError,
} from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';
import { toRingfenceError } from './errors.js';

let fake: FakeServer;
let client: RingfenceClient;

beforeAll(async () => {
  fake = await startFakeServer();
  client = new RingfenceClient({ socketPath: fake.socketPath });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

async function failure(p: Promise<unknown>): Promise<RingfenceError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RingfenceError);
  return err as RingfenceError;
}

describe('typed errors from the ErrorInfo trailer', () => {
  it('NOT_FOUND with reason and metadata', async () => {
    const err = await failure(client.getKey('nope'));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.codeName).toBe('NOT_FOUND');
    expect(err.reason).toBe(ErrorReason.KEY_NOT_FOUND);
    expect(err.reasonName).toBe('KEY_NOT_FOUND');
    expect(err.metadata).toEqual({ key_name: 'nope' });
    expect(err.message).toBe('key "nope" does not exist');
    expect(err.rpc).toBe('ringfence.v1.KeyService/GetKey');
    expect(isNotFound(err)).toBe(true);
    expect(isAlreadyExists(err) || isInvalidArgument(err) || isUnavailable(err) || isDaemonUnreachable(err)).toBe(false);
  });

  it('each predicate matches its code', async () => {
    await client.createKey('dup');
    expect(isAlreadyExists(await failure(client.createKey('dup')))).toBe(true);
    const disabled = await failure(client.encrypt('disabled', 'x'));
    expect(isFailedPrecondition(disabled) && disabled.reasonName === 'KEY_DISABLED').toBe(true);
    const denied = await failure(client.computeMac('denied', 'x'));
    expect(isPermissionDenied(denied)).toBe(true);
    expect(denied.metadata.uid).toBe('1000');
    const big = await failure(client.encrypt('k', new Uint8Array(1024 * 1024 + 1)));
    expect(isResourceExhausted(big) && big.reason === ErrorReason.PAYLOAD_TOO_LARGE).toBe(true);
  });

  it('AUTHENTICATION_FAILED is INVALID_ARGUMENT with its own predicate', async () => {
    const { ciphertext } = await client.encrypt('k', 'secret', { associatedData: 'ctx-1' });
    const err = await failure(client.decrypt(ciphertext, { associatedData: 'ctx-2' }));
    expect(isInvalidArgument(err)).toBe(true);
    expect(isAuthenticationFailed(err)).toBe(true);
    const tampered = Uint8Array.from(ciphertext);
    tampered[tampered.length - 1]! ^= 1;
    expect(isAuthenticationFailed(await failure(client.decrypt(tampered)))).toBe(true);
  });

  it('an error without ErrorInfo keeps its code with reason UNSPECIFIED', async () => {
    const err = await failure(client.encrypt('no-details', 'x'));
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(isInternal(err)).toBe(true);
    expect(err.reason).toBe(ErrorReason.UNSPECIFIED);
    expect(err.reasonName).toBe('UNSPECIFIED');
    expect(err.metadata).toEqual({});
  });

  // Found by review: INTERNAL (which the daemon sends for kernel errors it does not map) had no predicate.
  it('isInternal and isUnimplemented match their codes only', () => {
    const of = (code: grpc.status) => new RingfenceError({ code, message: 'x', rpc: 'r' });
    expect([isInternal(of(grpc.status.INTERNAL)), isUnimplemented(of(grpc.status.UNIMPLEMENTED))]).toEqual([true, true]);
    expect([isInternal(of(grpc.status.UNIMPLEMENTED)), isUnimplemented(of(grpc.status.INTERNAL)), isInternal(of(grpc.status.UNKNOWN))]).toEqual([false, false, false]);
  });

  it('predicates are false for anything but a RingfenceError', () => {
    const lookalike = Object.assign(new Error('x'), { code: grpc.status.NOT_FOUND, reason: ErrorReason.AUTHENTICATION_FAILED });
    for (const value of [lookalike, undefined, null, 'NOT_FOUND', 5]) {
      expect(isNotFound(value)).toBe(false);
      expect(isAuthenticationFailed(value)).toBe(false);
    }
  });

  it('batch items carry their own errors (ItemStatus), the batch itself succeeds', async () => {
    const res = await client.batchEncrypt([
      { keyName: 'k', plaintext: Buffer.from('a') },
      { keyName: 'missing-1', plaintext: Buffer.from('b') },
      { keyName: 'k', plaintext: Buffer.from('c') },
    ]);
    const [a, b, c] = batchResults(res);
    expect(a).not.toBeInstanceOf(RingfenceError);
    expect(c).not.toBeInstanceOf(RingfenceError);
    expect(isNotFound(b)).toBe(true);
    expect((b as RingfenceError).reasonName).toBe('KEY_NOT_FOUND');
    expect((b as RingfenceError).metadata).toEqual({ key_name: 'missing-1' });
    const decrypted = batchResults(await client.batchDecrypt([{ ciphertext: (a as { ciphertext: Uint8Array }).ciphertext }, { ciphertext: new Uint8Array(3) }]));
    expect(Buffer.from((decrypted[0] as { plaintext: Uint8Array }).plaintext).toString()).toBe('a');
    expect(isInvalidArgument(decrypted[1])).toBe(true);
  });
});

describe('no daemon at the socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ringfence-nodaemon-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names the socket path and says the daemon is not running', async () => {
    const socketPath = join(dir, 'absent.sock');
    const c = new RingfenceClient({ socketPath });
    const err = await failure(c.getStatus());
    await c.close();
    expect(isUnavailable(err)).toBe(true);
    expect(isDaemonUnreachable(err)).toBe(true);
    expect(err.message).toContain(socketPath);
    expect(err.message).toMatch(/not running or not reachable/);
    expect(err.message).toContain('ENOENT');
  });

  it('says the same when nothing listens on the path (ECONNREFUSED)', async () => {
    const socketPath = join(dir, 'stale.sock');
    writeFileSync(socketPath, '');
    const c = new RingfenceClient({ socketPath });
    const err = await failure(c.encrypt('k', 'x'));
    await c.close();
    expect(isDaemonUnreachable(err)).toBe(true);
    expect(err.message).toContain(socketPath);
    expect(err.message).toMatch(/not running or not reachable.*ECONNREFUSED/);
  });

  // Found by review: the message said the daemon was running (a stale socket file gives EACCES too)
  // and not what to do.
  it('permission denied on the socket (EACCES) says who may connect, not that the daemon runs', () => {
    const socketPath = join(dir, 'theirs.sock');
    const err = toRingfenceError(Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: `No connection established. Last error: connect EACCES ${socketPath}`, metadata: new grpc.Metadata() }), { rpc: 'CryptoService/Encrypt', socketPath });
    expect(isDaemonUnreachable(err)).toBe(true);
    expect(err.message).toContain(`permission denied on the ringfence daemon's socket ${socketPath} (EACCES)`);
    expect(err.message).toContain('group ringfence-clients');
    expect(err.message).not.toMatch(/is running/);
  });

  // Found by trying a SIGSTOPped daemon: grpc-js's "Deadline exceeded after 0.301s,name resolution:
  // ...,Waiting for LB pick" named neither the socket nor what to do.
  it('a socket that takes the connection but never answers: DEADLINE_EXCEEDED naming the socket, not sent', async () => {
    const socketPath = join(dir, 'mute.sock');
    const held: Socket[] = [];
    const mute = createServer((s) => held.push(s));
    await new Promise<void>((resolve) => mute.listen(socketPath, resolve));
    try {
      const c = new RingfenceClient({ socketPath });
      const err = await failure(c.encrypt('k', 'x', { timeoutMs: 300 }));
      await c.close();
      expect(held.length).toBeGreaterThan(0); // it did connect
      expect(isDeadlineExceeded(err)).toBe(true);
      expect(isDaemonUnreachable(err)).toBe(true);
      expect(err.message).toContain(`nothing at ${socketPath} answered`);
      expect(err.message).toMatch(/request was not sent/);
      expect(err.message).not.toMatch(/LB pick/);
    } finally {
      held.forEach((s) => s.destroy());
      await new Promise((resolve) => mute.close(resolve));
    }
  });

  it('a deadline that passes once the daemon has the request stays a plain deadline', async () => {
    // 'slow' answers after its delay: the call was sent, so it is not "unreachable".
    const err = await failure(client.encrypt('slow', 'x', { timeoutMs: 100 }));
    expect(isDeadlineExceeded(err)).toBe(true);
    expect(isDaemonUnreachable(err)).toBe(false);
  });

  it('streams and sessions fail the same way', async () => {
    const c = new RingfenceClient({ socketPath: join(dir, 'absent.sock') });
    const stream = c.encryptStream('k');
    const streamErr = await new Promise<unknown>((resolve) => stream.on('error', resolve).resume().end('data'));
    expect(isDaemonUnreachable(streamErr)).toBe(true);
    expect(isDaemonUnreachable(await failure(c.pipelined.hash('x')))).toBe(true);
    await c.close();
  });
});

describe('cancellation and deadlines', () => {
  it('an AbortSignal cancels the call: CANCELLED, and the daemon sees the cancellation', async () => {
    const before = fake.stats.cancelled;
    const ac = new AbortController();
    const pending = client.encrypt('slow', 'x', { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user pressed ^C')), 50);
    const err = await failure(pending);
    expect(isCancelled(err)).toBe(true);
    expect(err.message).toMatch(/aborted by the caller: user pressed \^C/);
    await expect.poll(() => fake.stats.cancelled).toBe(before + 1);
  });

  it('an already aborted signal fails without calling the daemon', async () => {
    const calls = fake.stats.calls.Encrypt ?? 0;
    const err = await failure(client.encrypt('k', 'x', { signal: AbortSignal.abort() }));
    expect(isCancelled(err)).toBe(true);
    expect(fake.stats.calls.Encrypt ?? 0).toBe(calls);
  });

  it('timeoutMs and deadline map to grpc deadlines', async () => {
    // 'slow' would answer OK after its delay: DEADLINE_EXCEEDED means the deadline ended the call first.
    expect(isDeadlineExceeded(await failure(client.encrypt('slow', 'x', { timeoutMs: 100 })))).toBe(true);
    expect(isDeadlineExceeded(await failure(client.encrypt('slow', 'x', { deadline: new Date(Date.now() + 100) })))).toBe(true);
  });

  it('the client default timeout applies unless the call says otherwise', async () => {
    const c = new RingfenceClient({ socketPath: fake.socketPath, defaultTimeoutMs: 100 });
    expect(isDeadlineExceeded(await failure(c.encrypt('slow', 'x')))).toBe(true);
    const ac = new AbortController();
    const noTimeout = c.encrypt('slow', 'x', { timeoutMs: Infinity, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 300)); // well past the default
    ac.abort();
    expect(isCancelled(await failure(noTimeout))).toBe(true);
    await c.close();
  });
});

// Review by helper-208: at the end of its SIGTERM drain period the daemon cuts the calls still
// running off (grpc-js forceShutdown: RST_STREAM CANCEL), and they failed CANCELLED "Call cancelled",
// as the caller's own abort does: a service that ignores its aborts ignored them too.
describe('calls the daemon cuts off while it stops', () => {
  it('fail UNAVAILABLE, saying the daemon cut them off, not CANCELLED', async () => {
    const stopping = await startFakeServer();
    const c = new RingfenceClient({ socketPath: stopping.socketPath });
    try {
      stopping.sessionSwallows = () => true; // still unanswered when it stops
      const unary = failure(c.encrypt('slow', 'x'));
      const session = failure(c.pipelined.encrypt('k', 'x'));
      const source = new PassThrough();
      source.write('still writing');
      const stream = pipeline(source, c.encryptStream('k'), new Writable({ write: (_chunk, _enc, cb) => cb() })).catch((e: unknown) => e);
      await expect.poll(() => [stopping.stats.calls.Encrypt, stopping.stats.calls.EncryptStream, stopping.stats.sessionOps]).toEqual([1, 1, 1]);
      await stopping.close(); // forceShutdown, as the daemon's drain ends
      for (const err of [await unary, await session, await stream]) {
        expect(err).toBeInstanceOf(RingfenceError);
        expect([isCancelled(err), isUnavailable(err), (err as RingfenceError).unreachable]).toEqual([false, true, false]);
        expect((err as Error).message).toMatch(/^the daemon cut the call off before it completed .* this client did not cancel it/);
      }
    } finally {
      await c.close();
    }
  });
});
