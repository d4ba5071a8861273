/**
 * A client given no socket chooses between the user's own daemon's and the system daemon's
 * (clientSocketCandidates) when it is made, and again when its socket has gone: real Unix sockets in
 * temp dirs stand for both (the module's fixed /run/ringfence path is replaced by one of them).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { isDaemonUnreachable, isUnavailable, RingfenceClient } from './index.js';
import { startFakeServer, type FakeServer } from './test-server.js';

const sockets = vi.hoisted(() => ({ own: '', system: '' }));
vi.mock('../../rpc/socket-path.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../rpc/socket-path.js')>();
  const candidates = () => [sockets.own, sockets.system];
  // As the real ones for a non-root user with an XDG_RUNTIME_DIR, on these two paths.
  return { ...real, clientSocketCandidates: candidates, clientSocketPath: () => candidates().find((p) => existsSync(p)) ?? sockets.own };
});

const dirs = [mkdtempSync(join(tmpdir(), 'rf-own-')), mkdtempSync(join(tmpdir(), 'rf-system-'))];
sockets.own = join(dirs[0]!, 'ringfence.sock');
sockets.system = join(dirs[1]!, 'ringfence.sock');
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const daemons: FakeServer[] = [];
const clients: RingfenceClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const d of daemons.splice(0)) await d.close();
});
async function daemonAt(path: string): Promise<FakeServer> {
  const d = await startFakeServer(path);
  daemons.push(d);
  return d;
}
async function stop(d: FakeServer): Promise<void> {
  await d.close();
  await expect.poll(() => existsSync(d.socketPath)).toBe(false); // the socket file goes with it
}
function client(opts: ConstructorParameters<typeof RingfenceClient>[0] = {}): RingfenceClient {
  const c = new RingfenceClient(opts);
  clients.push(c);
  return c;
}
/** The call, tried until it succeeds (the client may learn of a dropped connection a moment late), at most `tries` times. */
async function eventually<T>(call: () => Promise<T>, tries = 30): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await call();
    } catch (err) {
      if (i >= tries) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
const digest = async (p: Promise<{ digest: Uint8Array }>) => Buffer.from((await p).digest).toString('hex');

// Review by helper-211: a client that found neither socket when it was made kept the user's own path
// for good, so a service started before the system daemon (or during a socket restart) never found it.
describe('a client given no socket', () => {
  it('that found neither socket finds the system daemon once it serves', async () => {
    const c = client();
    expect(c.socketPath).toBe(sockets.own);
    const down = await c.hash('x').catch((e: unknown) => e);
    expect([isDaemonUnreachable(down), (down as Error).message.includes(sockets.own)]).toEqual([true, true]);
    await daemonAt(sockets.system);
    const expected = await digest(c.hash('x'));
    expect(c.socketPath).toBe(sockets.system);
    expect(await digest(c.pipelined.hash('x'))).toBe(expected);
  });

  it('moves, sessions included, to the other daemon when its own socket has gone', async () => {
    const system = await daemonAt(sockets.system);
    const c = client();
    expect(c.socketPath).toBe(sockets.system);
    const session = c.session();
    const before = await digest(session.hash('x'));
    await stop(system);
    const own = await daemonAt(sockets.own);
    expect(await eventually(() => digest(session.hash('x')))).toBe(before);
    expect(await digest(c.hash('x'))).toBe(before);
    expect(c.socketPath).toBe(sockets.own);
    expect(own.stats.sessionStreams).toBe(1);
    await session.close();
  });

  it('moves calls still waiting to connect when their socket goes: not sent there, they go to the other daemon', async () => {
    await daemonAt(sockets.system);
    // Takes connections and never answers them as HTTP/2: the channel stays connecting.
    let accepted = 0;
    const silent = createServer(() => accepted++);
    await new Promise<void>((resolve) => silent.listen(sockets.own, resolve));
    try {
      const c = client();
      expect(c.socketPath).toBe(sockets.own);
      const unary = c.hash('x');
      const session = c.pipelined.hash('x');
      const stream = c.encryptStream('k');
      const streamError = new Promise((resolve) => stream.on('error', resolve));
      stream.resume().write('x');
      await expect.poll(() => accepted).toBeGreaterThan(0);
      rmSync(sockets.own); // its socket is gone; the connection is not
      const expected = await digest(c.hash('x'));
      expect([await digest(unary), await digest(session)]).toEqual([expected, expected]);
      expect(c.socketPath).toBe(sockets.system);
      // A stream cannot be sent again by the SDK (its data was the caller's): it says so.
      const e = await streamError;
      expect([isUnavailable(e), isDaemonUnreachable(e)]).toEqual([true, true]);
      expect((e as Error).message).toMatch(/whose socket is gone; it was not sent: send it again/);
    } finally {
      silent.close();
    }
  });

  it('but a socketPath given is kept, gone or not', async () => {
    await daemonAt(sockets.system);
    const c = client({ socketPath: sockets.own });
    const e = await c.hash('x').catch((err: unknown) => err);
    expect([isDaemonUnreachable(e), c.socketPath]).toEqual([true, sockets.own]);
  });
});
