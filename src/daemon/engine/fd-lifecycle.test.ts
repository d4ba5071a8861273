/**
 * File descriptors of the engine on error paths, with AF_ALG faked (as engine.test.ts does): every fd
 * opened is closed exactly once, and a failed request's socket never returns to the pool
 * (review by helper-87, which found no defect; kept as a guard).
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { KernelAlg } from '../../capabilities/suites.js';

const fake = vi.hoisted(() => ({
  next: 100,
  open: new Set<number>(),
  doubleClosed: [] as number[],
  failSend: undefined as number | undefined, // errno for the next send
  failRead: undefined as number | undefined, // errno for the next read
  failAccept: 0, // accepts to fail with acceptErrno
  acceptErrno: 24, // EMFILE
  failOpen: undefined as number | undefined, // errno for the next socket()
  failKey: undefined as number | undefined,
  failSize: false,
  used: [] as number[], // fds requests ran on
}));

vi.mock('../../../native-ffi/af-alg.js', async (importOriginal) => {
  const { SyscallError } = await import('../../../native-ffi/syscall-error.js');
  const real = await importOriginal<typeof import('../../../native-ffi/af-alg.js')>();
  const fd = () => { const n = fake.next++; fake.open.add(n); return n; };
  const check = (n: number) => { if (!fake.open.has(n)) throw new SyscallError('x', 9); };
  const send = (op: number) => {
    check(op); fake.used.push(op);
    const e = fake.failSend; if (e !== undefined) { fake.failSend = undefined; throw new SyscallError('sendmsg', e); }
  };
  const read = (op: number, out: Buffer) => {
    check(op);
    const e = fake.failRead; if (e !== undefined) { fake.failRead = undefined; throw new SyscallError('read', e); }
    out.fill(1); return out.length;
  };
  return {
    ...real,
    openTransform: () => { const e = fake.failOpen; if (e !== undefined) { fake.failOpen = undefined; throw new SyscallError('socket', e); } return fd(); },
    acceptOp: (t: number) => { check(t); if (fake.failAccept > 0) { fake.failAccept--; throw new SyscallError('accept4', fake.acceptErrno); } return fd(); },
    setKeyBySerial: () => { const e = fake.failKey; if (e !== undefined) { fake.failKey = undefined; throw new SyscallError('setsockopt', e); } },
    setAeadAuthSize: () => {},
    closeFd: (n: number) => { if (!fake.open.delete(n)) fake.doubleClosed.push(n); },
    sizeBuffers: () => { if (fake.failSize) { fake.failSize = false; throw new SyscallError('setsockopt', 1); } return { send: 1 << 20, receive: 1 << 20 }; },
    sendRequest: send,
    readResult: read,
    sendRequestAsync: async (op: number) => { await new Promise((r) => setTimeout(r, 2)); send(op); },
    readResultAsync: async (op: number, out: Buffer) => { await new Promise((r) => setTimeout(r, 2)); return read(op, out); },
  };
});

const { CryptoEngine } = await import('./engine.js');
const GCM = { type: 'aead', name: 'gcm(aes)' } as KernelAlg;
const enc = (e: InstanceType<typeof CryptoEngine>, serial: number, size = 32) =>
  e.aeadEncrypt(GCM, serial, 16, Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(size));
const dec = (e: InstanceType<typeof CryptoEngine>, serial: number) =>
  e.aeadDecrypt(GCM, serial, 16, Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(48));

beforeEach(() => { fake.doubleClosed.length = 0; fake.used.length = 0; });

describe('engine file descriptors on error paths', () => {
  it('EBADMSG / EINVAL / EAGAIN, sync and async: the socket is closed, errors mapped, nothing leaks', async () => {
    for (const asyncThresholdBytes of [1 << 20, 0]) {
      const e = new CryptoEngine({ asyncThresholdBytes });
      fake.failRead = 74;
      await expect(dec(e, 1)).rejects.toMatchObject({ code: 'AUTHENTICATION_FAILED' });
      // The failed request's socket was closed at once, not returned to the pool for the next one.
      const failedOn = fake.used.at(-1)!;
      expect(fake.open.has(failedOn)).toBe(false);
      await enc(e, 1);
      expect(fake.used.at(-1)).not.toBe(failedOn);
      fake.failSend = 22;
      await expect(enc(e, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      fake.failSend = 11;
      await expect(enc(e, 1)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errno: 'EAGAIN' });
      await enc(e, 1);
      e.close();
      expect(fake.open.size).toBe(0);
      expect(fake.doubleClosed).toEqual([]);
    }
  });

  it('key, accept and buffer-sizing failures close what they opened', async () => {
    const e = new CryptoEngine();
    fake.failKey = 126;
    await expect(enc(e, 2)).rejects.toMatchObject({ code: 'KEY_UNUSABLE', errno: 'ENOKEY' });
    fake.failSize = true;
    await expect(enc(e, 2)).rejects.toBeTruthy();
    fake.failAccept = 1;
    await expect(enc(e, 2)).rejects.toBeTruthy();
    e.close();
    expect(fake.open.size).toBe(0);
    expect(fake.doubleClosed).toEqual([]);
  });

  it('no descriptor or memory at socket() or accept(): OUT_OF_RESOURCES (not INTERNAL, not PAYLOAD_TOO_LARGE); the next request works (review by helper-197)', async () => {
    const e = new CryptoEngine();
    fake.failOpen = 24; // EMFILE
    await expect(enc(e, 4)).rejects.toMatchObject({ code: 'OUT_OF_RESOURCES', errno: 'EMFILE' });
    fake.failOpen = 23; // ENFILE
    await expect(enc(e, 4)).rejects.toMatchObject({ code: 'OUT_OF_RESOURCES', errno: 'ENFILE' });
    for (const errno of [12, 24]) {
      fake.acceptErrno = errno; // ENOMEM, then EMFILE
      fake.failAccept = 1;
      await expect(enc(e, 4)).rejects.toMatchObject({ code: 'OUT_OF_RESOURCES', errno: errno === 12 ? 'ENOMEM' : 'EMFILE' });
    }
    fake.acceptErrno = 24;
    await enc(e, 4);
    e.close();
    expect(fake.open.size).toBe(0);
    expect(fake.doubleClosed).toEqual([]);
  });

  it('a discarded socket hands its slot to a waiter; forgetKey mid-flight closes everything once', async () => {
    const e = new CryptoEngine({ maxOpSockets: 2, asyncThresholdBytes: 0 });
    fake.failRead = 74;
    const all = Array.from({ length: 10 }, (_, i) => (i === 0 ? dec(e, 3) : enc(e, 3)).then(() => 'ok', (x: { code: string }) => x.code));
    const late = Array.from({ length: 5 }, () => enc(e, 3).then(() => 'ok', (x: { code: string }) => x.code));
    await new Promise((r) => setTimeout(r, 3));
    e.forgetKey(3);
    const codes = await Promise.all([...all, ...late]);
    expect(codes[0]).toBe('AUTHENTICATION_FAILED');
    expect(codes.filter((c) => c === 'KEY_UNUSABLE').length + codes.filter((c) => c === 'ok').length).toBe(14);
    expect(fake.open.size).toBe(0);
    expect(fake.doubleClosed).toEqual([]);
    e.close();
  });
});
