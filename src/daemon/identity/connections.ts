/**
 * The one place a call is mapped back to its caller. grpc-js has no peer-credential API and its
 * calls expose only `getPeer()`, which it builds from the connection's `remoteAddress` (empty for
 * Unix sockets; grpc-js server-interceptors.ts getPeer). So each accepted connection gets a unique
 * remoteAddress token, and the token maps to the principal read at accept time. The entry goes
 * when the connection closes; a call whose peer is not registered has no principal (denied).
 */
import type { Socket } from 'node:net';
import { principalOfSocket, type Principal } from './principal.js';

const PREFIX = 'ringfence-conn:';

export interface PeerCall {
  getPeer(): string;
}

export class Connections {
  private readonly byPeer = new Map<string, Principal>();
  private next = 1;

  constructor(private readonly read: (socket: Socket) => Principal = principalOfSocket) {}

  /** Reads the peer's credentials and tags the socket; throws if they cannot be read. */
  register(socket: Socket): Principal {
    const principal = this.read(socket);
    const token = `${PREFIX}${this.next++}`;
    // An own property shadows net.Socket's remoteAddress getter; http2's socket proxy forwards it.
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true });
    this.byPeer.set(token, principal);
    socket.once('close', () => this.byPeer.delete(token));
    return principal;
  }

  /** The caller of a grpc-js server call, or undefined when it did not come through register(). */
  principalOf(call: PeerCall): Principal | undefined {
    return this.byPeer.get(call.getPeer());
  }

  get size(): number {
    return this.byPeer.size;
  }
}
