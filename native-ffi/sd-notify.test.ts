import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sdNotify } from './sd-notify.js';

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
  it('delivers the state to a path socket', async () => {
    expect(await receiver(join(dir, 'notify'))).toBe('READY=1\nSTATUS=serving');
  });

  it('delivers the state to an abstract socket', async () => {
    expect(await receiver(`@rf-notify-${process.pid}`)).toBe('READY=1\nSTATUS=serving');
  });

  it('does nothing without NOTIFY_SOCKET', () => {
    expect(sdNotify('READY=1', undefined)).toBe(false);
  });

  it('says when the socket is missing', () => {
    expect(() => sdNotify('READY=1', join(dir, 'absent'))).toThrow(/sd_notify.*ENOENT/);
  });
});
