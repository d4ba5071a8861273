import { describe, expect, it } from 'vitest';
import { acceptOp, AlgOp, buildMsg, checkSent, closeFd, openTransform, readResult, sendRequest, SOL_ALG } from './af-alg.js';
import { createHash } from 'node:crypto';
import { addressOf } from './libc.js';
import { SyscallError } from './syscall-error.js';

/** The sha256 digest of `text` through an open AF_ALG hash transform (closed after). */
function sha256ByAfAlg(fd: number, text: string): string {
  const op = acceptOp(fd);
  try {
    sendRequest(op, {}, [Buffer.from(text)]);
    const digest = Buffer.alloc(32);
    if (readResult(op, digest) !== 32) throw new Error('short digest');
    return digest.toString('hex');
  } finally {
    closeFd(op);
    closeFd(fd);
  }
}

describe('buildMsg', () => {
  it('lays out msghdr, iovecs and control messages as the LP64 C structs', () => {
    const aad = Buffer.from('aad');
    const pt = Buffer.from('plaintext');
    const iv = Buffer.alloc(12, 0xab);
    const { msg, keep } = buildMsg({ op: AlgOp.ENCRYPT, iv, assocLen: 3 }, [aad, Buffer.alloc(0), pt]);
    // One buffer: msghdr (56 bytes), two iovecs (32), then the control messages (80).
    expect(msg.length).toBe(56 + 32 + 80);
    expect(keep).toEqual([msg, aad, pt]); // the buffers the kernel reads stay referenced
    const base = addressOf(msg);
    expect(msg.readBigUInt64LE(0)).toBe(0n); // msg_name
    expect(msg.readUInt32LE(8)).toBe(0); // msg_namelen
    expect(msg.readBigUInt64LE(16)).toBe(base + 56n); // msg_iov
    expect(msg.readBigUInt64LE(24)).toBe(2n); // the empty buffer is dropped
    expect(msg.readBigUInt64LE(56)).toBe(addressOf(aad));
    expect(msg.readBigUInt64LE(64)).toBe(3n);
    expect(msg.readBigUInt64LE(72)).toBe(addressOf(pt));
    expect(msg.readBigUInt64LE(80)).toBe(9n);
    expect(msg.readBigUInt64LE(32)).toBe(base + 88n); // msg_control
    // CMSG_SPACE(4) = 24 for op, CMSG_SPACE(4 + 12) = 32 for the IV, CMSG_SPACE(4) = 24 for assoclen.
    expect(msg.readBigUInt64LE(40)).toBe(80n);
    expect(msg.readUInt32LE(48)).toBe(0); // msg_flags
    const control = msg.subarray(88);
    expect(control.readBigUInt64LE(0)).toBe(20n); // CMSG_LEN(4)
    expect(control.readInt32LE(8)).toBe(SOL_ALG);
    expect(control.readInt32LE(12)).toBe(3); // ALG_SET_OP
    expect(control.readUInt32LE(16)).toBe(1);
    expect(control.readUInt32LE(20)).toBe(0); // padding
    expect(control.readBigUInt64LE(24)).toBe(32n); // CMSG_LEN(16)
    expect(control.readInt32LE(36)).toBe(2); // ALG_SET_IV
    expect(control.readUInt32LE(40)).toBe(12);
    expect(control.subarray(44, 56).equals(iv)).toBe(true);
    expect(control.readBigUInt64LE(56)).toBe(20n);
    expect(control.readInt32LE(68)).toBe(4); // ALG_SET_AEAD_ASSOCLEN
    expect(control.readUInt32LE(72)).toBe(3);
    expect(control.readUInt32LE(76)).toBe(0); // padding
  });

  it('zeroes what it does not set, though its memory comes from the shared pool', () => {
    // Dirty the pool: the next small allocUnsafe slices are likely to reuse these bytes' neighbours.
    for (let i = 0; i < 64; i++) Buffer.allocUnsafe(200).fill(0xee);
    const { msg } = buildMsg({}, [Buffer.from('x')]);
    expect(msg.length).toBe(56 + 16);
    expect(msg.readBigUInt64LE(32)).toBe(0n); // no control messages
    expect(msg.readBigUInt64LE(40)).toBe(0n);
    expect([...msg.subarray(0, 16), ...msg.subarray(48, 56)].every((b) => b === 0)).toBe(true);
  });
});

describe('openTransform', () => {
  // Where AF_ALG works (the guests) the sha256 digest is checked in af-alg.kernel.test.ts; a host
  // with AF_ALG checks it here too. These hosts have none: the error must be typed (found by review:
  // the digest branch ran nowhere).
  it('fails with a typed EAFNOSUPPORT on a kernel without AF_ALG (a kernel with it: sha256 of "abc" as node:crypto has it)', () => {
    let fd: number;
    try {
      fd = openTransform('hash', 'sha256');
    } catch (err) {
      expect(err).toBeInstanceOf(SyscallError);
      expect(err).toMatchObject({ syscall: 'socket', code: 'EAFNOSUPPORT' });
      return;
    }
    expect(sha256ByAfAlg(fd, 'abc')).toBe(createHash('sha256').update('abc').digest('hex'));
  });

  it('rejects an algorithm name longer than sockaddr_alg holds, before opening a socket', () => {
    expect(() => openTransform('hash', 'x'.repeat(64))).toThrow(/^algorithm name too long/);
  });
});

describe('a short AF_ALG send', () => {
  it('is the EAGAIN of buffers too small, not a RangeError (review by helper-116; engine/errors.test.ts: PAYLOAD_TOO_LARGE)', () => {
    expect(checkSent(10, 10)).toBe(10);
    let err: unknown;
    try {
      checkSent(4096, 10_000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SyscallError);
    expect((err as SyscallError).code).toBe('EAGAIN');
    expect((err as Error).message).toContain('accepted 4096 of 10000 bytes');
  });
});
