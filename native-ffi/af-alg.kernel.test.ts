// AF_ALG requests larger than the operation socket's send buffer. Nothing reads the socket while
// its sender waits, so a blocking send would wait for ever (holding a libuv thread for async
// requests); sizeBuffers must count in the kernel's pages, and a send must never wait.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as afAlg from './af-alg.js';
import { projectModule, runTsJson } from '../test/support/run-ts.js';
import { pageSize } from './libc.js';

describe('openTransform on a kernel with AF_ALG', () => {
  it('binds sha256: its digest of "abc" is the one node:crypto computes', () => {
    const fd = afAlg.openTransform('hash', 'sha256');
    const op = afAlg.acceptOp(fd);
    try {
      afAlg.sendRequest(op, {}, [Buffer.from('abc')]);
      const digest = Buffer.alloc(32);
      expect(afAlg.readResult(op, digest)).toBe(32);
      expect(digest.toString('hex')).toBe(createHash('sha256').update('abc').digest('hex'));
    } finally {
      afAlg.closeFd(op);
      afAlg.closeFd(fd);
    }
  });
});

describe('AF_ALG sends that do not fit the socket buffer', () => {
  it('fail at once with a short count instead of blocking for ever (found by review)', () => {
    // In a child process: a send that blocks ends there, by the timeout, not in the test worker.
    const r = runTsJson<{ error: string; code: string; send: number }>(
      `import { randomBytes } from 'node:crypto';
import * as afAlg from ${projectModule('native-ffi/af-alg.ts')};
const tfm = afAlg.openTransform('skcipher', 'ctr(aes)');
afAlg.setKey(tfm, randomBytes(32));
const op = afAlg.acceptOp(tfm);
let error = 'none';
let code = 'none';
try { afAlg.sendRequest(op, { op: afAlg.AlgOp.ENCRYPT, iv: Buffer.alloc(16) }, [Buffer.alloc(8 << 20)]); } catch (e) { error = e.message; code = e.code; }
const { send } = afAlg.sizeBuffers(op, 1 << 20);
console.log(JSON.stringify({ error, code, send }));`,
      { timeoutMs: 30_000 },
    );
    // Reported as the EAGAIN the kernel gives when it copied nothing (849172f): PAYLOAD_TOO_LARGE.
    expect(r.error).toMatch(/^sendmsg \(AF_ALG accepted \d+ of 8388608 bytes: the request exceeds the socket buffers\) failed: EAGAIN \(errno 11\)$/);
    expect(r.code).toBe('EAGAIN');
    // What sizeBuffers promises for 1 MiB is whole pages of the buffer it got, less a page.
    expect(r.send).toBeGreaterThanOrEqual(1 << 20);
    expect(r.send % pageSize()).toBe(0);
  });
});
