/**
 * Requests waiting for one of a key's kernel sockets when the key is deleted (its waiting period
 * over), through the real CryptoEngine with AF_ALG faked: the deletion closes the key's transform
 * (CryptoEngine.forgetKey), which refuses its waiting requests (KEY_UNUSABLE), and a transform keyed
 * again finds the kernel key gone (ENOKEY). Both answered INTERNAL / KERNEL_ERROR; they answer what
 * a request sent a moment later gets, NOT_FOUND (review by helper-197).
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';

// The kernel answers a request only when the test lets it; keying by a destroyed serial is ENOKEY.
const fake = vi.hoisted(() => ({ gates: [] as (() => void)[], gone: new Set<number>() }));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const { SyscallError } = await import('../../../native-ffi/syscall-error.js');
  const base = (await import('../engine/fake-af-alg.test-support.js')).fakeAfAlg(await importOriginal<typeof import('../../../native-ffi/af-alg.js')>());
  return {
    ...base,
    setKeyBySerial: (_fd: number, serial: number) => {
      if (fake.gone.has(serial)) throw new SyscallError('setsockopt', 126, `ALG_SET_KEY_BY_KEY_SERIAL ${serial}`);
    },
    sendRequestAsync: async () => void (await new Promise<void>((resolve) => fake.gates.push(resolve))),
  };
});

const { CryptoEngine } = await import('../engine/engine.js');
const { ErrorReason, toApiError } = await import('../api/errors.js');
const { deleteKeyNow, standInContext } = await import('./stand-in.test-support.js');
const { encrypt } = await import('./encrypt.js');
const { decrypt } = await import('./decrypt.js');

const none = Buffer.alloc(0);
const req = (o: object) => o as never;
const answer = (p: Promise<unknown>) =>
  // Attached at once: the queued requests fail while the deletion runs, before they are awaited.
  p.then(
    () => ({ answered: true }),
    (err: unknown) => {
      const e = toApiError(err);
      return { code: grpc.status[e.code], reason: ErrorReason[e.reason], metadata: e.metadata };
    },
  );

/** Lets the kernel answer the running requests, one at a time, until nothing is running. */
async function runAll(): Promise<void> {
  for (;;) {
    await new Promise((r) => setImmediate(r));
    const gate = fake.gates.shift();
    if (!gate) return;
    gate();
  }
}

describe('requests waiting for a key deleted meanwhile', () => {
  it('the one in the kernel and those queued for its socket (their transform closed) answer NOT_FOUND, not INTERNAL', async () => {
    // One socket per key, and every request asynchronous: one holds the socket (the Decrypt, which
    // reaches the engine without a wait), the others queue for it.
    const engine = new CryptoEngine({ maxOpSockets: 1, asyncThresholdBytes: 0 });
    const ctx = await standInContext({ engine: engine as never });
    const made = await Promise.all([encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('x'), associatedData: none })), runAll()]).then(([r]) => r);
    const id = ctx.keys.get('k').id;
    const serials = (await ctx.keys.forEncrypt('k')).serials;
    const first = answer(encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })));
    const second = answer(encrypt(ctx, req({ keyName: 'k', plaintext: Buffer.from('b'), associatedData: none })));
    const decrypting = answer(decrypt(ctx, req({ ciphertext: made.ciphertext, associatedData: none })));
    await vi.waitFor(() => expect(fake.gates).toHaveLength(1));
    for (const s of serials) fake.gone.add(s);
    await deleteKeyNow(ctx, 'k');
    await runAll();
    const notFound = { code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', metadata: { key_name: 'k' } };
    expect(await first).toEqual(notFound);
    expect(await second).toEqual(notFound);
    expect(await decrypting).toEqual({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', metadata: { key_id: id } });
    expect(engine.openTransforms).toBe(0);
    engine.close();
  });

  it('one resolved before the deletion and keyed after it (ENOKEY) answers NOT_FOUND, not INTERNAL', async () => {
    const engine = new CryptoEngine({ asyncThresholdBytes: 1 << 20 });
    const ctx = await standInContext({ engine: engine as never });
    const serials = (await ctx.keys.forEncrypt('k')).serials;
    // The request waits between its key checks and the engine (as one does for the libuv pool).
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let reach!: () => void;
    const reached = new Promise<void>((r) => (reach = r));
    const held = Object.assign(Object.create(engine) as typeof engine, {
      aeadEncrypt: async (...a: Parameters<typeof engine.aeadEncrypt>) => {
        reach();
        await released;
        return engine.aeadEncrypt(...a);
      },
    });
    const encrypting = answer(encrypt({ ...ctx, engine: held }, req({ keyName: 'k', plaintext: Buffer.from('a'), associatedData: none })));
    await reached;
    for (const s of serials) fake.gone.add(s);
    await deleteKeyNow(ctx, 'k');
    release();
    expect(await encrypting).toEqual({ code: 'NOT_FOUND', reason: 'KEY_NOT_FOUND', metadata: { key_name: 'k' } });
    engine.close();
  });
});
