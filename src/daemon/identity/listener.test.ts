// The daemon's own socket on the host: created with its configured mode from the start, not
// widened by the umask until a later chmod (found by review: under umask 002 it was 0775 between
// bind and chmod, and a connection accepted then stayed open).
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, Server } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_LIMITS } from '../config.js';
import { serverOptions } from '../daemon.js';
import { Connections } from './connections.js';
import { ENDED_CONNECTION_MS, openListener } from './listener.js';
import type { Principal } from './principal.js';

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('openListener', () => {
  it('binds the socket with socketMode already in force, whatever the umask; the umask is restored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-listener-'));
    dirs.push(dir);
    const path = join(dir, 'rf.sock');
    // The mode the socket has the moment listen() has bound it, before anything else can run.
    let modeAtBind: number | undefined;
    const listen = Server.prototype.listen;
    vi.spyOn(Server.prototype, 'listen').mockImplementation(function (this: Server, ...args: unknown[]) {
      const r = (listen as (...a: unknown[]) => Server).apply(this, args);
      modeAtBind = lstatSync(path).mode & 0o777;
      return r;
    });
    const before = process.umask(0o002);
    try {
      const l = await openListener({ socket: path, socketMode: 0o600, env: {}, log: () => {}, onConnection: (s) => s.destroy() });
      expect(modeAtBind).toBe(0o600);
      expect(lstatSync(path).mode & 0o777).toBe(0o600);
      expect(process.umask()).toBe(0o002);
      l.close();
    } finally {
      process.umask(before);
    }
  });
});

describe('connections the daemon ends', () => {
  it('closes one whose client neither reads nor closes after grpc-js ends it (idle timeout), giving back its slot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-listener-'));
    dirs.push(dir);
    const path = join(dir, 'rf.sock');
    const connections = new Connections(() => ({ uid: 4242, gid: 4242, pid: 1 }) as Principal, 1);
    const server = new grpc.Server(serverOptions({ ...DEFAULT_LIMITS, connectionIdleTimeout: 200 }));
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const l = await openListener({ socket: path, socketMode: 0o600, env: {}, log: () => {}, onConnection: (s) => {
      s.on('error', () => undefined);
      connections.register(s);
      injector.injectConnection(s);
    } });
    // Sends nothing and never reads: not even the HTTP/2 preface.
    const client = connect(path);
    client.on('error', () => undefined);
    try {
      await vi.waitFor(() => expect(connections.openBy(4242)).toBe(1));
      await vi.waitFor(() => expect(connections.openBy(4242)).toBe(0), { timeout: 200 + ENDED_CONNECTION_MS + 2000 });
    } finally {
      client.destroy();
      l.close();
      server.forceShutdown();
    }
  });
});
