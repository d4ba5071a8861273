/**
 * The one place a call is mapped back to its caller. grpc-js has no peer-credential API and its
 * calls expose only `getPeer()`, which it builds from the connection's `remoteAddress` (empty for
 * Unix sockets; grpc-js server-interceptors.ts getPeer). So each accepted connection gets a unique
 * remoteAddress token, and the token maps to the principal read at accept time. The entry goes
 * when the connection closes; a call whose peer is not registered has no principal (denied).
 * It also counts each caller's (uid's) open connections, so that one caller cannot take every
 * connection the daemon accepts (Limits.maxConnectionsPerCaller).
 */
import type { Socket } from 'node:net';
import { principalOfSocket, type Principal } from './principal.js';

const PREFIX = 'ringfence-conn:';

export interface PeerCall {
  getPeer(): string;
}

/** register() refused a connection: its caller already holds maxPerCaller. */
export class CallerConnectionLimitError extends Error {
  constructor(
    readonly uid: number,
    readonly limit: number,
  ) {
    super(`uid ${uid} already has ${limit} connections open (maxConnectionsPerCaller)`);
    this.name = 'CallerConnectionLimitError';
  }
}

export class Connections {
  private readonly byPeer = new Map<string, Principal>();
  private readonly openByUid = new Map<number, number>();
  private next = 1;

  constructor(
    private readonly read: (socket: Socket) => Principal = principalOfSocket,
    private readonly maxPerCaller = Infinity,
  ) {}

  /**
   * Reads the peer's credentials and tags the socket. Throws if they cannot be read, and
   * CallerConnectionLimitError if the caller already holds maxPerCaller connections: the caller
   * must then close the socket.
   */
  register(socket: Socket): Principal {
    const principal = this.read(socket);
    const open = this.openByUid.get(principal.uid) ?? 0;
    if (open >= this.maxPerCaller) throw new CallerConnectionLimitError(principal.uid, this.maxPerCaller);
    this.openByUid.set(principal.uid, open + 1);
    const token = `${PREFIX}${this.next++}`;
    // An own property shadows net.Socket's remoteAddress getter; http2's socket proxy forwards it.
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true });
    this.byPeer.set(token, principal);
    socket.once('close', () => {
      this.byPeer.delete(token);
      const n = (this.openByUid.get(principal.uid) ?? 1) - 1;
      if (n > 0) this.openByUid.set(principal.uid, n);
      else this.openByUid.delete(principal.uid);
    });
    return principal;
  }

  /** Connections open from one uid. */
  openBy(uid: number): number {
    return this.openByUid.get(uid) ?? 0;
  }

  /** The caller of a grpc-js server call, or undefined when it did not come through register(). */
  principalOf(call: PeerCall): Principal | undefined {
    return this.byPeer.get(call.getPeer());
  }

  get size(): number {
    return this.byPeer.size;
  }
}
