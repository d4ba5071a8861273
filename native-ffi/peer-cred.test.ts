import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { peerCred, peerGroups } from './peer-cred.js';

const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'rf-peercred-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('peerCred', () => {
  it('reports the connecting process, not anything it says', async () => {
    const path = join(dir, 's.sock');
    const accepted = new Promise<Socket>((resolve) => {
      const server = createServer((sock) => {
        resolve(sock);
        server.close();
      }).listen(path);
    });
    // The client claims to be someone else; only the kernel's record counts.
    const child = spawn(process.execPath, ['-e', `const s=require('net').connect(${JSON.stringify(path)},()=>s.write('uid=0 pid=1'));setTimeout(()=>{},5000)`]);
    const sock = await accepted;
    const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    const cred = peerCred(fd);
    expect(cred).toEqual({ pid: child.pid, uid: process.getuid!(), gid: process.getgid!() });
    sock.destroy();
    child.kill();
  });

  it('reports the supplementary groups the connecting process has, many or none (the tests run as root)', async () => {
    for (const groups of [[4242, 4343], Array.from({ length: 100 }, (_, i) => 5000 + i), []]) {
      const path = join(dir, `g${groups.length}.sock`);
      const accepted = new Promise<Socket>((resolve) => {
        const server = createServer((sock) => {
          resolve(sock);
          server.close();
        }).listen(path);
      });
      // 100 groups: more than the first buffer holds, so the kernel's ERANGE path is taken.
      const child = spawn(process.execPath, ['-e', `process.setgroups(${JSON.stringify(groups)});const s=require('net').connect(${JSON.stringify(path)});setTimeout(()=>{},5000)`]);
      const sock = await accepted;
      const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
      expect(peerGroups(fd)).toEqual(groups);
      sock.destroy();
      child.kill();
    }
  });

  it('fails on a descriptor that is not a socket', () => {
    const fd = openSync('/dev/null', 'r');
    expect(() => peerCred(fd)).toThrow(/SO_PEERCRED.*ENOTSOCK/);
    expect(() => peerGroups(fd)).toThrow(/SO_PEERGROUPS.*ENOTSOCK/);
    closeSync(fd);
  });
});
