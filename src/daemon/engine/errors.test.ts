import { describe, expect, it } from 'vitest';
import { checkSent } from '../../../native-ffi/af-alg.js';
import { SyscallError } from '../../../native-ffi/syscall-error.js';
import { fromKernel } from './errors.js';
import { estimatedRequestBound, readOptmemMax } from './request-bound.js';

describe('fromKernel', () => {
  it('a short AF_ALG send is PAYLOAD_TOO_LARGE, as the kernel\'s EAGAIN is, not INTERNAL (review by helper-116)', () => {
    let err: unknown;
    try {
      checkSent(4096, 10_000);
    } catch (e) {
      err = e;
    }
    const e = fromKernel(err, 'request', 'gcm(aes) with key 5');
    expect(e.code).toBe('PAYLOAD_TOO_LARGE');
    // Names the sysctl that bounds it, and its value here (review by helper-137).
    const optmem = readOptmemMax();
    const hint =
      optmem === undefined
        ? ' (AF_ALG bounds a request by net.core.optmem_max)'
        : optmem === 'host-only'
          ? " (AF_ALG bounds a request by net.core.optmem_max, the host's: kernels before 6.8 do not show it in the daemon's network namespace; raise it on the host, or lower the daemon's payload limits: docs/operations.md, Limits)"
          : ` (AF_ALG bounds a request by net.core.optmem_max, ${optmem} in the daemon's network namespace, which takes about ${(estimatedRequestBound(optmem) / 1048576).toFixed(1)} MiB; lower the daemon's payload limits, or raise it: docs/operations.md, Limits)`;
    expect(e.message).toBe(`gcm(aes) with key 5: request larger than the kernel will buffer${hint}`);
  });
});

describe('fromKernel: no descriptor or memory for a new AF_ALG socket (review by helper-197)', () => {
  const [ENOMEM, ENFILE, EMFILE, ENOBUFS] = [12, 23, 24, 105];

  it('socket() or accept() out of descriptors or memory is OUT_OF_RESOURCES naming what ran out, not INTERNAL', () => {
    const opened = fromKernel(new SyscallError('socket', EMFILE, 'AF_ALG aead'), 'open', 'gcm(aes)', 'aead');
    expect([opened.code, opened.errno]).toEqual(['OUT_OF_RESOURCES', 'EMFILE']);
    expect(opened.message).toBe('gcm(aes): the daemon could not open an AF_ALG socket: it has as many files open as it may (EMFILE: its RLIMIT_NOFILE, LimitNOFILE= in its systemd unit)');
    const system = fromKernel(new SyscallError('accept4', ENFILE), 'request', 'gcm(aes) with key 5');
    expect([system.code, system.message]).toEqual(['OUT_OF_RESOURCES', 'gcm(aes) with key 5: the daemon could not open an AF_ALG socket: the system has as many files open as it may (ENFILE: fs.file-max)']);
    for (const [syscall, errno] of [['accept4', ENOMEM], ['socket', ENOMEM], ['accept4', ENOBUFS]] as const) {
      expect(fromKernel(new SyscallError(syscall, errno), 'request', 'gcm(aes) with key 5').code).toBe('OUT_OF_RESOURCES');
    }
  });

  it("ENOMEM on sendmsg is still the request's size (PAYLOAD_TOO_LARGE): the syscall tells them apart", () => {
    expect(fromKernel(new SyscallError('sendmsg', ENOMEM), 'request', 'gcm(aes) with key 5').code).toBe('PAYLOAD_TOO_LARGE');
    // Other errnos of socket()/accept() keep their meaning.
    expect(fromKernel(new SyscallError('accept4', 22), 'request', 'gcm(aes) with key 5').code).toBe('INVALID_ARGUMENT');
  });
});
