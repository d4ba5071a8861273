/**
 * AF_ALG sockets (linux/if_alg.h): the kernel crypto API from user space.
 * A transform socket is bound to an algorithm and keyed; each accept() on it yields an operation
 * socket that carries one request at a time (sendmsg with control messages, then read).
 *
 * Errno, common to these calls:
 * - EAFNOSUPPORT: this kernel has no AF_ALG (CONFIG_CRYPTO_USER_API off, or blocked).
 * - EMFILE / ENFILE / ENOMEM / ENOBUFS (socket, accept): no descriptor or kernel memory for a socket.
 * - ENOENT (bind): the algorithm is not in the kernel, or af_alg_restrict refuses it to this caller.
 * - ENOPROTOOPT (setsockopt): option unknown to this kernel (key by serial needs >= 6.2), or the key's
 *   type cannot key a transform.
 * - EACCES / ENOKEY / EKEYREVOKED / EKEYEXPIRED (key by serial): the key is not usable by this process.
 * - EINVAL: wrong key length for the algorithm, bad IV length, assoclen beyond the data, bad tag size.
 * - EBADMSG (read, decrypt): authentication failed.
 * - EAGAIN or a short count (sendmsg): a request beyond the socket's buffers (sends never wait: nothing
 *   reads while the sender waits, so it would wait for ever). Size the buffers first.
 */
import { constants } from 'node:os';
import { addressOf, call, callAsync, pageSize } from './libc.js';
import { SyscallError } from './syscall-error.js';

export const AF_ALG = 38;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
export const SOL_ALG = 279;
const SOL_SOCKET = 1;

export const AlgOpt = {
  SET_KEY: 1,
  SET_IV: 2,
  SET_OP: 3,
  SET_AEAD_ASSOCLEN: 4,
  SET_AEAD_AUTHSIZE: 5,
  SET_KEY_BY_KEY_SERIAL: 7,
} as const;

export const AlgOp = { DECRYPT: 0, ENCRYPT: 1 } as const;
export const MSG_MORE = 0x8000;

const SO = { SNDBUF: 7, RCVBUF: 8, SNDBUFFORCE: 32, RCVBUFFORCE: 33 } as const;

export type AlgType = 'aead' | 'skcipher' | 'hash' | 'rng';

/** struct sockaddr_alg: family u16, type[14], feat u32, mask u32, name[64]. */
function sockaddrAlg(type: AlgType, name: string): Buffer {
  const addr = Buffer.alloc(88);
  addr.writeUInt16LE(AF_ALG, 0);
  if (Buffer.byteLength(name) > 63) throw new RangeError(`algorithm name too long: ${name}`);
  addr.write(type, 2, 13, 'ascii');
  addr.write(name, 24, 63, 'ascii');
  return addr;
}

/** socket(AF_ALG) + bind. Errno: EAFNOSUPPORT, ENOENT (see above). */
export function openTransform(type: AlgType, name: string): number {
  const addr = sockaddrAlg(type, name); // a name too long is refused before any socket exists
  const fd = call('socket', [AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0], `AF_ALG ${type}`);
  try {
    call('bind', [fd, addr, 88], `${type} ${name}`);
    return fd;
  } catch (err) {
    call('close', [fd]);
    throw err;
  }
}

/** ALG_SET_KEY with raw bytes. Used only by tests and the probe; ringfence keys transforms by serial. */
export function setKey(tfm: number, key: Buffer): void {
  call('setsockopt', [tfm, SOL_ALG, AlgOpt.SET_KEY, key, key.length], 'ALG_SET_KEY');
}

/** ALG_SET_KEY_BY_KEY_SERIAL (Linux >= 6.2): the kernel copies a user/logon/encrypted key's payload. */
export function setKeyBySerial(tfm: number, serial: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(serial);
  call('setsockopt', [tfm, SOL_ALG, AlgOpt.SET_KEY_BY_KEY_SERIAL, v, 4], `ALG_SET_KEY_BY_KEY_SERIAL ${serial}`);
}

/** ALG_SET_AEAD_AUTHSIZE: tag length; the option value is NULL and optlen carries the size. */
export function setAeadAuthSize(tfm: number, tagBytes: number): void {
  call('setsockopt', [tfm, SOL_ALG, AlgOpt.SET_AEAD_AUTHSIZE, null, tagBytes], `ALG_SET_AEAD_AUTHSIZE ${tagBytes}`);
}

/** accept(2) on a transform socket: a new operation socket sharing the transform's key. */
export function acceptOp(tfm: number): number {
  return call('accept4', [tfm, null, null, SOCK_CLOEXEC], 'AF_ALG operation socket');
}

export function closeFd(fd: number): void {
  call('close', [fd]);
}

/**
 * Raises the operation socket's buffers so one AEAD request of `bytes` fits: AF_ALG needs the whole
 * message before it can compute, so a request larger than the send buffer would block for ever, and
 * output beyond the receive budget is silently left unprocessed. SO_*BUFFORCE needs CAP_NET_ADMIN
 * (which restricted kernels require of us anyway); without it the kernel caps at net.core.wmem_max /
 * rmem_max. Returns what one request may carry: input bytes and output bytes, with a page of slack.
 */
export function sizeBuffers(op: number, bytes: number): { send: number; receive: number } {
  const v = Buffer.alloc(4);
  v.writeInt32LE(Math.min(bytes, 0x3fffffff));
  for (const [force, plain] of [[SO.SNDBUFFORCE, SO.SNDBUF], [SO.RCVBUFFORCE, SO.RCVBUF]] as const) {
    try {
      call('setsockopt', [op, SOL_SOCKET, force, v, 4]);
    } catch {
      call('setsockopt', [op, SOL_SOCKET, plain, v, 4]);
    }
  }
  // af_alg_sndbuf() counts whole pages; af_alg_get_rsgl() stops when less than a page of receive
  // budget is left, so keep a page in reserve on both sides. Pages, not 4 KiB: arm64 has 64 KiB ones.
  const page = pageSize();
  return {
    send: Math.max(0, (getIntOpt(op, SO.SNDBUF) & ~(page - 1)) - page),
    receive: Math.max(0, (getIntOpt(op, SO.RCVBUF) & ~(page - 1)) - page),
  };
}

function getIntOpt(fd: number, opt: number): number {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  call('getsockopt', [fd, SOL_SOCKET, opt, v, len]);
  return v.readInt32LE();
}

export interface OpHeader {
  op?: (typeof AlgOp)[keyof typeof AlgOp];
  iv?: Buffer;
  assocLen?: number;
}

/** struct msghdr on LP64; a struct iovec; a cmsghdr (its CMSG_LEN offset). */
const MSGHDR_BYTES = 56;
const IOVEC_BYTES = 16;
const CMSG_HDR_BYTES = 16;
/** CMSG_SPACE(n): the header, then the payload padded to 8 bytes. */
const cmsgSpace = (payload: number) => CMSG_HDR_BYTES + ((payload + 7) & ~7);

/**
 * Builds the msghdr of a request: control messages set op / IV / assoclen, iovecs point at `data`.
 * msghdr, iovecs and control messages share one buffer (`msg`: msghdr at 0, then the iovecs, then
 * the control messages), so a request costs one small pooled allocation, not one per struct.
 * The returned `keep` array holds every buffer the kernel will dereference: keep it alive until the
 * call returns (essential for async calls).
 */
export function buildMsg(header: OpHeader, data: Buffer[]): { msg: Buffer; keep: Buffer[] } {
  const parts = data.filter((d) => d.length > 0);
  const iovBytes = IOVEC_BYTES * parts.length;
  const controlBytes =
    (header.op !== undefined ? cmsgSpace(4) : 0) + (header.iv ? cmsgSpace(4 + header.iv.length) : 0) + (header.assocLen !== undefined ? cmsgSpace(4) : 0);
  // allocUnsafe takes a slice of Node's pool (no native allocation); zeroed below, padding included.
  const msg = Buffer.allocUnsafe(MSGHDR_BYTES + iovBytes + controlBytes).fill(0);
  const base = addressOf(msg);
  let at = MSGHDR_BYTES;
  if (parts.length) {
    msg.writeBigUInt64LE(base + BigInt(at), 16); // msg_iov
    msg.writeBigUInt64LE(BigInt(parts.length), 24); // msg_iovlen
    for (const d of parts) {
      msg.writeBigUInt64LE(addressOf(d), at);
      msg.writeBigUInt64LE(BigInt(d.length), at + 8);
      at += IOVEC_BYTES;
    }
  }
  if (controlBytes) {
    msg.writeBigUInt64LE(base + BigInt(at), 32); // msg_control
    msg.writeBigUInt64LE(BigInt(controlBytes), 40); // msg_controllen
  }
  // Each cmsghdr: cmsg_len (CMSG_LEN, size_t), cmsg_level, cmsg_type (int), then the payload.
  const cmsg = (type: number, payloadBytes: number): number => {
    msg.writeBigUInt64LE(BigInt(CMSG_HDR_BYTES + payloadBytes), at);
    msg.writeInt32LE(SOL_ALG, at + 8);
    msg.writeInt32LE(type, at + 12);
    const payload = at + CMSG_HDR_BYTES;
    at += cmsgSpace(payloadBytes);
    return payload;
  };
  if (header.op !== undefined) msg.writeUInt32LE(header.op, cmsg(AlgOpt.SET_OP, 4));
  if (header.iv) {
    const p = cmsg(AlgOpt.SET_IV, 4 + header.iv.length);
    msg.writeUInt32LE(header.iv.length, p); // struct af_alg_iv: ivlen, then the IV
    header.iv.copy(msg, p + 4);
  }
  if (header.assocLen !== undefined) msg.writeUInt32LE(header.assocLen, cmsg(AlgOpt.SET_AEAD_ASSOCLEN, 4));
  return { msg, keep: [msg, ...parts] };
}

function totalLength(data: Buffer[]): number {
  return data.reduce((n, d) => n + d.length, 0);
}

/**
 * Never waits for room in the send buffer: nothing reads the socket while its sender waits, so a
 * request larger than the buffer would block for ever (and hold a libuv thread). It fails instead,
 * with EAGAIN or a short count.
 */
const MSG_DONTWAIT = 0x40;

/** sendmsg(2) of a request, synchronously. Returns bytes accepted (all of them, or it throws). */
export function sendRequest(op: number, header: OpHeader, data: Buffer[], flags = 0): number {
  const { msg, keep } = buildMsg(header, data);
  const n = call('sendmsg', [op, msg, flags | MSG_DONTWAIT], 'AF_ALG request');
  keep.length = 0;
  return checkSent(n, totalLength(data));
}

/** sendRequest on the libuv pool; `owner` is whose request it is, for its turn there (libc.ts callAsync). */
export async function sendRequestAsync(op: number, header: OpHeader, data: Buffer[], flags = 0, owner = ''): Promise<number> {
  const { msg, keep } = buildMsg(header, data);
  const n = await callAsync('sendmsg', [op, msg, flags | MSG_DONTWAIT], 'AF_ALG request', owner);
  keep.length = 0;
  return checkSent(n, totalLength(data));
}

/**
 * A short count means the socket's buffers were too small: with MSG_DONTWAIT af_alg_sendmsg returns
 * what it copied, and only fails (EAGAIN) when it copied nothing. Reported as that EAGAIN, so it is
 * PAYLOAD_TOO_LARGE as the kernel's own is, not INTERNAL (review by helper-116).
 */
export function checkSent(n: number, want: number): number {
  if (n !== want) throw new SyscallError('sendmsg', constants.errno.EAGAIN, `AF_ALG accepted ${n} of ${want} bytes: the request exceeds the socket buffers`);
  return n;
}

/** read(2) of a result into `out`; returns the byte count. Errno: EBADMSG on authentication failure. */
export function readResult(op: number, out: Buffer): number {
  return call('read', [op, out, out.length], 'AF_ALG result');
}

/** readResult on the libuv pool; `owner` as for sendRequestAsync. */
export async function readResultAsync(op: number, out: Buffer, owner = ''): Promise<number> {
  const n = await callAsync('read', [op, out, out.length], 'AF_ALG result', owner);
  // The kernel wrote into `out` from another thread: keep it referenced until the call is over.
  void out.length;
  return n;
}

/** socket(AF_ALG) alone: whether the address family exists for this process. Errno: EAFNOSUPPORT. */
export function checkFamily(): void {
  closeFd(call('socket', [AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0], 'AF_ALG'));
}
