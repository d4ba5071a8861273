/**
 * The daemon's own listening socket, whose connections are handed to grpc-js (so that each is
 * identified first). Either systemd passed one (LISTEN_FDS: used as is, never unlinked or
 * chmod-ed — the .socket unit owns its path and mode), or the daemon binds its path: the path
 * checked (socket.ts), a stale socket probed and removed, bound with its mode (umask) and the mode
 * verified after listen().
 */
import { createServer, type Server, type Socket } from 'node:net';
import { prepareSocketPath, checkSocketMode, type Log } from '../socket.js';
import { clearListenEnv, listenFdFromEnv } from './listen-fds.js';
import { throttledRefusals } from './warn-throttle.js';

export interface Listener {
  readonly server: Server;
  /** True when systemd passed the socket. */
  readonly activated: boolean;
  /** Stops accepting; connections already accepted go on (grpc-js drains them). */
  close(): void;
  /** Connections closed at accept because maxConnections were open. */
  readonly dropped: number;
}

/**
 * How long a connection whose end the daemon has sent (grpc-js closed its session: idle timeout,
 * max age, shutdown) may wait for the client's. Node's graceful HTTP/2 close only ends the socket
 * and waits for the peer's EOF, so a client that never reads nor closes held it, its fd and its
 * maxConnectionsPerCaller slot for good (review by helper-186).
 */
export const ENDED_CONNECTION_MS = 1000;

/** At most one warning per this many ms about refused connections, so a flood cannot flood the log. */
export const DROP_WARN_INTERVAL_MS = 10_000;

export interface ListenOptions {
  socket: string;
  socketMode: number;
  env: NodeJS.ProcessEnv;
  log: Log;
  warn?: Log;
  /** Connections open at once (net.Server maxConnections); more are closed at accept. */
  maxConnections?: number;
  onConnection: (socket: Socket) => void;
  pid?: number;
}

export async function openListener(opts: ListenOptions): Promise<Listener> {
  const fd = listenFdFromEnv(opts.env, opts.pid);
  // Not half-open: the peer's EOF is all a vanished (killed) client leaves, and grpc-js does not
  // close a connection on EOF itself; kept half-open, its calls and their fds would never be freed.
  const server = createServer({ allowHalfOpen: false }, (socket) => {
    socket.once('finish', () => setTimeout(() => socket.destroy(), ENDED_CONNECTION_MS).unref());
    opts.onConnection(socket);
  });
  // Accept errors (EMFILE and the like) must not end the daemon; they are logged and accepting goes on.
  server.on('error', (err) => opts.log('accepting a connection failed', { err: (err as Error).message }));
  // Node closes a connection beyond maxConnections right at accept (before onConnection) and emits 'drop'.
  const drops = throttledRefusals(DROP_WARN_INTERVAL_MS, (fields) => (opts.warn ?? opts.log)('too many connections: closed new ones at accept', fields));
  if (opts.maxConnections !== undefined) {
    server.maxConnections = opts.maxConnections;
    server.on('drop', () => drops.count({ maxConnections: opts.maxConnections }));
  }
  const listening = (arg: object) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(arg, () => {
        server.off('error', onError);
        resolve();
      });
    });
  if (fd !== undefined) {
    clearListenEnv(opts.env);
    await listening({ fd });
    opts.log('listening on the socket passed by systemd (LISTEN_FDS)', { fd });
  } else {
    await prepareSocketPath(opts.socket, { log: opts.log });
    // bind() creates the socket with the umask's mode: set so that it is exactly socketMode from the
    // start (a connection accepted while it was more open would stay) and never chmod-ed after
    // (checkSocketMode says why). listen() binds synchronously, so the process-wide umask is changed
    // for no other code.
    const umask = process.umask(~opts.socketMode & 0o777);
    let listened: Promise<void>;
    try {
      listened = listening({ path: opts.socket });
    } finally {
      process.umask(umask);
    }
    await listened;
    try {
      await checkSocketMode(opts.socket, opts.socketMode);
    } catch (err) {
      server.close();
      throw err;
    }
  }
  return {
    server,
    activated: fd !== undefined,
    get dropped() {
      return drops.total;
    },
    close: () => {
      if (server.listening) server.close();
    },
  };
}
