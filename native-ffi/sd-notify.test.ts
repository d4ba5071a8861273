import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sdNotify } from './sd-notify.js';
import { projectModule, runTsJson } from '../test/support/run-ts.js';

const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'rf-notify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// An independent receiver: Python's datagram socket, standing in for systemd.
function receiver(address: string): Promise<string> {
  const py = `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)
s.bind(sys.argv[1].replace('@','\\0',1) if sys.argv[1].startswith('@') else sys.argv[1])
print('bound',flush=True)
print(s.recv(4096).decode(),flush=True)`;
  const child = spawn('python3', ['-c', py, address]);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('bound\n') && !out.includes('sent')) {
        out += 'sent';
        sdNotify('READY=1\nSTATUS=serving', address);
      }
    });
    child.on('exit', (code) => (code === 0 ? resolve(out.replace(/^bound\nsent/, '').trim()) : reject(new Error(out))));
  });
}

describe('sdNotify', () => {
  // A Python process starts in each: seconds on a loaded machine.
  it('delivers the state to a path socket', { timeout: 30_000 }, async () => {
    expect(await receiver(join(dir, 'notify'))).toBe('READY=1\nSTATUS=serving');
  });

  it('delivers the state to an abstract socket', { timeout: 30_000 }, async () => {
    expect(await receiver(`@rf-notify-${process.pid}`)).toBe('READY=1\nSTATUS=serving');
  });

  it('delivers the state to an abstract socket whose name fills sun_path (108 bytes with its NUL; review by helper-116)', { timeout: 30_000 }, async () => {
    expect(await receiver(`@rf-notify-${process.pid}-`.padEnd(108, 'x'))).toBe('READY=1\nSTATUS=serving');
    expect(() => sdNotify('READY=1', `@${'x'.repeat(108)}`)).toThrow(/too long/);
    expect(() => sdNotify('READY=1', `/${'x'.repeat(107)}`)).toThrow(/too long/);
  });

  it('does nothing without NOTIFY_SOCKET', () => {
    expect(sdNotify('READY=1', undefined)).toBe(false);
  });

  it('says when the socket is missing', () => {
    expect(() => sdNotify('READY=1', join(dir, 'absent'))).toThrow(/sd_notify.*ENOENT/);
  });
});

describe('sdNotify to a manager that does not read', () => {
  it('fails with EAGAIN once its queue is full, instead of blocking the event loop (found by review)', async () => {
    const address = join(dir, 'stuck');
    // Binds and never reads: the kernel queues max_dgram_qlen datagrams, then a blocking send would sleep.
    const py = spawn('python3', ['-c', `import socket,sys,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint('bound',flush=True)\ntime.sleep(60)`, address]);
    try {
      await new Promise<void>((resolve) => py.stdout.once('data', () => resolve()));
      // In a child process: a send that blocks ends there, by the timeout, not in this test worker.
      // The kernel queues net.unix.max_dgram_qlen datagrams (10 by default; systemd sets 512).
      const cap = Number(readFileSync('/proc/sys/net/unix/max_dgram_qlen', 'utf8')) + 100;
      const r = runTsJson<{ sent: number; code?: string }>(
        `import { sdNotify } from ${projectModule('native-ffi/sd-notify.ts')};
let sent = 0, code;
try { for (; sent < ${cap}; sent++) sdNotify('WATCHDOG=1', ${JSON.stringify(address)}); } catch (e) { code = e.code; }
console.log(JSON.stringify({ sent, code }));`,
        { timeoutMs: 20_000 },
      );
      expect(r.code).toBe('EAGAIN');
      expect(r.sent).toBeGreaterThan(0);
      expect(r.sent).toBeLessThan(cap);
    } finally {
      py.kill();
    }
  }, 30_000);
});
