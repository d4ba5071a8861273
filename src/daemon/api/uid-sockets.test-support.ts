/**
 * Callers of a real grpc-js server in a test, told apart as the daemon tells them apart
 * (identity/connections.ts): one Unix socket per uid, each connection identified as the uid of
 * the socket it came in on (standing in for SO_PEERCRED).
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connections, type PeerCall } from '../identity/connections.js';

export class UidSockets {
  private readonly dir = mkdtempSync(join(tmpdir(), 'rf-uid-sockets-'));
  /** Socket path per uid. */
  readonly paths: Record<number, string> = {};
  private accepting = 0;
  readonly connections = new Connections(() => ({ uid: this.accepting, gid: this.accepting, pid: 1, groups: [] }));
  /** Access that allows everything, naming each call's caller by its connection. */
  readonly access = {
    forCall: (call: PeerCall) => ({ principal: this.connections.principalOf(call), authorize: () => {}, allows: () => true, mayEverDo: () => true }),
  };
  private readonly listeners: net.Server[] = [];

  constructor(uids: number[]) {
    for (const uid of uids) this.paths[uid] = join(this.dir, `${uid}.sock`);
  }

  /** Listens on every uid's socket, handing each connection to `server` once identified. */
  async serve(server: grpc.Server): Promise<void> {
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    for (const [uid, path] of Object.entries(this.paths)) {
      const listener = net.createServer((sock) => {
        sock.on('error', () => {});
        this.accepting = Number(uid);
        this.connections.register(sock);
        injector.injectConnection(sock);
      });
      await new Promise<void>((resolve) => listener.listen(path, resolve));
      this.listeners.push(listener);
    }
  }

  close(): void {
    for (const l of this.listeners) l.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
