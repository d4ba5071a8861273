// Identity plumbing on the host (AF_UNIX and SO_PEERCRED work here): a real net.Server whose
// connections go through Connections.register and a grpc-js connection injector to a tiny service
// that answers with principalOf(call); and socket activation with a real inherited fd 3.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, linkSync, mkdtempSync, realpathSync, statSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CallerConnectionLimitError, Connections } from './connections.js';
import { openListener, type Listener } from './listener.js';
import { clearListenEnv, listenFdFromEnv } from './listen-fds.js';
import { PROJECT_ROOT } from '../../../test/support/run-ts.js';

const raw = (b: Buffer) => b;
const WHO: grpc.ServiceDefinition = {
  who: { path: '/t.T/Who', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw, originalName: 'who' },
};

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function start(): Promise<{ path: string; connections: Connections; listener: Listener }> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-id-'));
  const path = join(dir, 'sub', 'rf.sock');
  const server = new grpc.Server();
  const connections = new Connections();
  server.addService(WHO, {
    who: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(JSON.stringify({ peer: call.getPeer(), principal: connections.principalOf(call) ?? null }))),
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = await openListener({
    socket: path,
    socketMode: 0o600,
    env: {},
    log: () => {},
    onConnection: (sock) => {
      connections.register(sock);
      injector.injectConnection(sock);
    },
  });
  cleanups.push(() => {
    listener.close();
    server.forceShutdown();
  });
  return { path, connections, listener };
}

function ask(path: string): Promise<{ client: grpc.Client; answer: { peer: string; principal: Record<string, unknown> | null } }> {
  const Client = grpc.makeGenericClientConstructor(WHO, 'T');
  // A private subchannel pool: otherwise clients in one process share one connection.
  const client = new Client(`unix:${path}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  return new Promise((resolve, reject) =>
    (client as unknown as { who: (req: Buffer, cb: (err: Error | null, res?: Buffer) => void) => void }).who(Buffer.alloc(0), (err, res) =>
      err ? reject(err) : resolve({ client, answer: JSON.parse(res!.toString()) }),
    ),
  );
}

describe('identity by SO_PEERCRED through the connection injector', () => {
  it('gives every call its connection principal (uid, gid, pid, exe) and a peer unique per connection', async () => {
    const { path, connections } = await start();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const a = await ask(path);
    const b = await ask(path);
    expect(a.answer.principal).toEqual({ uid: process.getuid!(), gid: process.getgid!(), pid: process.pid, groups: expect.any(Array), exe: realpathSync(process.execPath) });
    // SO_PEERGROUPS: this process's supplementary groups (node's getgroups adds the egid if absent).
    const sorted = (g: number[]) => [...new Set(g)].sort((x, y) => x - y);
    expect(sorted([...(a.answer.principal!.groups as number[]), process.getegid!()])).toEqual(sorted(process.getgroups!()));
    expect(a.answer.peer).toMatch(/^ringfence-conn:\d+$/);
    expect(b.answer.peer).not.toBe(a.answer.peer);
    expect(connections.size).toBe(2);
    a.client.close();
    b.client.close();
    await expect.poll(() => connections.size, { timeout: 5000 }).toBe(0);
  });

  it('sees a different process as itself', async () => {
    const conns = new Connections();
    const dir = mkdtempSync(join(tmpdir(), 'rf-id-'));
    const p2 = join(dir, 's');
    const got = new Promise<unknown>((resolve) => {
      const s: Server = createServer((sock) => resolve(conns.register(sock)));
      s.listen(p2);
      cleanups.push(() => s.close());
    });
    const child2 = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(p2)}).on('connect', () => setTimeout(() => process.exit(0), 3000))`]);
    cleanups.push(() => child2.kill());
    expect(await got).toMatchObject({ uid: process.getuid!(), pid: child2.pid });
  });

  it('a call from a connection that was never registered has no principal', () => {
    const conns = new Connections(() => ({ uid: 1, gid: 1, pid: 1, groups: [] }));
    expect(conns.principalOf({ getPeer: () => 'unknown' })).toBeUndefined();
    expect(conns.principalOf({ getPeer: () => 'ringfence-conn:1' })).toBeUndefined();
  });

  it('refuses a caller its connections beyond maxPerCaller, others still get in, and counts closes', () => {
    const uids = [1000, 1000, 1000, 2000];
    const conns = new Connections(() => ({ uid: uids.shift()!, gid: 1, pid: 1, groups: [] }), 2);
    const socks = Array.from({ length: 4 }, () => new EventEmitter() as unknown as Socket);
    expect(conns.register(socks[0]!).uid).toBe(1000);
    conns.register(socks[1]!);
    expect(() => conns.register(socks[2]!)).toThrow(CallerConnectionLimitError);
    expect(conns.register(socks[3]!).uid).toBe(2000);
    expect([conns.openBy(1000), conns.openBy(2000), conns.size]).toEqual([2, 1, 3]);
    // The refused socket was never counted; a close frees its caller's slot.
    (socks[0] as unknown as EventEmitter).emit('close');
    (socks[3] as unknown as EventEmitter).emit('close');
    expect([conns.openBy(1000), conns.openBy(2000), conns.size]).toEqual([1, 0, 1]);
  });

  it('drops the connection of a client that vanished (kill -9)', async () => {
    const { path, connections } = await start();
    // The peer's EOF is all the daemon hears of a killed client; a half-open socket would keep the
    // connection, its calls and their fds forever.
    const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(path)}).on('connect', () => console.log('up'))`]);
    cleanups.push(() => child.kill('SIGKILL'));
    await new Promise((r) => child.stdout.once('data', r));
    await expect.poll(() => connections.size, { timeout: 5000 }).toBe(1);
    child.kill('SIGKILL');
    await expect.poll(() => connections.size, { timeout: 5000 }).toBe(0);
  });

  it('refuses to replace a live socket (stale ones: socket.test.ts)', async () => {
    const { path } = await start();
    await expect(openListener({ socket: path, socketMode: 0o600, env: {}, log: () => {}, onConnection: () => {} })).rejects.toThrow(/another daemon is listening/);
  });
});

describe('socket activation (LISTEN_FDS)', () => {
  it.each([
    [{}, 100, undefined],
    [{ LISTEN_FDS: '1', LISTEN_PID: '100' }, 100, 3],
    [{ LISTEN_FDS: '1', LISTEN_PID: '101' }, 100, undefined],
    [{ LISTEN_FDS: '0', LISTEN_PID: '100' }, 100, undefined],
    [{ LISTEN_FDS: '1' }, 100, undefined],
  ])('%j for pid %d -> %s', (env, pid, fd) => {
    expect(listenFdFromEnv(env, pid)).toBe(fd);
  });

  it('rejects more than one fd and a malformed count', () => {
    expect(() => listenFdFromEnv({ LISTEN_FDS: '2', LISTEN_PID: '7' }, 7)).toThrow(/exactly one/);
    expect(() => listenFdFromEnv({ LISTEN_FDS: 'x', LISTEN_PID: '7' }, 7)).toThrow(/not a number/);
  });

  it('clears the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '1', LISTEN_PID: '1', LISTEN_FDNAMES: 'x', KEEP: '1' };
    clearListenEnv(env);
    expect(env).toEqual({ KEEP: '1' });
  });

  it('serves on an inherited fd 3 without binding, unlinking or chmod-ing anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-act-'));
    const path = join(dir, 'activated.sock');
    const parentServer = createServer();
    await new Promise<void>((r) => parentServer.listen(path, r));
    chmodSync(path, 0o640);
    const fd = (parentServer as unknown as { _handle: { fd: number } })._handle.fd;
    const unused = join(dir, 'configured.sock');
    const script = `
      import { openListener } from ${JSON.stringify(join(PROJECT_ROOT, 'src/daemon/identity/listener.ts'))};
      import { Connections } from ${JSON.stringify(join(PROJECT_ROOT, 'src/daemon/identity/connections.ts'))};
      const conns = new Connections();
      const l = await openListener({ socket: ${JSON.stringify(unused)}, socketMode: 0o666, env: process.env, log: () => {},
        onConnection: (s) => s.end(JSON.stringify({ ...conns.register(s), activated: l.activated, env: process.env.LISTEN_FDS ?? null })) });
      console.log('ready');
    `;
    // sh's exec keeps the pid, so LISTEN_PID names the node process as sd_listen_fds requires.
    const child = spawn('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=1 exec "${process.execPath}" --import tsx --input-type=module -e "$0"`, script], {
      cwd: PROJECT_ROOT,
      stdio: ['ignore', 'pipe', 'inherit', fd],
    });
    cleanups.push(() => child.kill());
    // The parent's close() unlinks its path; a hard link keeps a name for the socket the child now holds.
    const alias = join(dir, 'alias.sock');
    linkSync(path, alias);
    parentServer.close();
    await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
    const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
      let text = '';
      connect(alias)
        .on('data', (d) => (text += d.toString()))
        .on('end', () => resolve(JSON.parse(text)))
        .on('error', reject);
    });
    expect(answer).toMatchObject({ uid: process.getuid!(), pid: process.pid, activated: true, env: null });
    expect(statSync(alias).mode & 0o777).toBe(0o640); // not chmod-ed to the configured 0666
    expect(existsSync(unused)).toBe(false); // nothing bound at the configured path
  }, 30_000);
});
