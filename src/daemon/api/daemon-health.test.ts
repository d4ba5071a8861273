// The daemon's health service at its stop: open Watch calls see NOT_SERVING and then end with OK
// when the drain starts, instead of holding the stop for the whole drain period and being cut off
// (CANCELLED); the daemon's own calls still drain as before. Review by helper-144.
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HealthImplementation } from 'grpc-health-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DaemonHealth } from './daemon-health.js';
import { Drain } from './drain.js';

const raw = (b: Buffer) => b;
const WATCH = '/grpc.health.v1.Health/Watch';
const OWN = '/test.Own/Hold';
// HealthCheckResponse { status = 1 }: SERVING is 1, NOT_SERVING 2.
const SERVING = Buffer.from('0801', 'hex');
const NOT_SERVING = Buffer.from('0802', 'hex');
/** Well within the daemon's drain period (10 s): what "at once" means here. */
const PROMPTLY_MS = 2000;

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

interface Served {
  client: grpc.Client;
  server: grpc.Server;
  drain: Drain;
  health: DaemonHealth;
  /** The daemon's own server-streaming calls in progress: each sent one message and waits. */
  own: grpc.ServerWritableStream<Buffer, Buffer>[];
}

async function serve(): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-health-'));
  const server = new grpc.Server();
  const own: grpc.ServerWritableStream<Buffer, Buffer>[] = [];
  const hold = { path: OWN, requestStream: false, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
  server.addService({ Hold: hold }, {
    Hold: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      own.push(call);
      call.write(Buffer.from('own'));
    },
  });
  const drain = new Drain();
  const health = new DaemonHealth(server, ['', 'ringfence.v1.KeyService'], drain);
  health.serving();
  const socket = join(dir, 's.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }), () => server.forceShutdown(), () => client.close());
  return { client, server, drain, health, own };
}

interface Watched {
  data: Buffer[];
  /** Resolves at the first message. */
  first: Promise<void>;
  /** The final status code, or 'still open' if none came within PROMPTLY_MS. */
  code: () => Promise<grpc.status | 'still open'>;
  call: grpc.ClientReadableStream<Buffer>;
}

function watch(c: grpc.Client, path = WATCH, body = Buffer.alloc(0)): Watched {
  const call = c.makeServerStreamRequest(path, raw, raw, body);
  const data: Buffer[] = [];
  const first = new Promise<void>((resolve) => call.once('data', () => resolve()));
  call.on('data', (d: Buffer) => data.push(d));
  call.on('error', () => {});
  const ended = new Promise<grpc.status>((resolve) => call.on('status', (s: grpc.StatusObject) => resolve(s.code)));
  return { data, first, call, code: () => within(ended, 'still open' as const) };
}

function within<T, U>(p: Promise<T>, otherwise: U, ms = PROMPTLY_MS): Promise<T | U> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(otherwise), ms);
    void p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** The Watch calls the health service keeps to end at the drain. */
const open = (health: DaemonHealth) => (health as unknown as { watches: Set<unknown> }).watches.size;

const shutdown = (server: grpc.Server) => within(new Promise<'done'>((resolve) => server.tryShutdown(() => resolve('done'))), 'still waiting' as const);

describe('health watches at the daemon\'s stop', () => {
  it('sends NOT_SERVING to an open Watch and then ends it with OK, so the stop does not wait out the drain period', async () => {
    const { client, server, drain, health } = await serve();
    const w = watch(client);
    await w.first;
    drain.start();
    expect(await w.code()).toBe(grpc.status.OK);
    expect(w.data).toEqual([SERVING, NOT_SERVING]);
    expect(await shutdown(server)).toBe('done');
    expect(open(health)).toBe(0);
  });

  it('ends every open Watch, of each name, at once', async () => {
    const { client, drain } = await serve();
    const keyService = Buffer.concat([Buffer.from([0x0a, 23]), Buffer.from('ringfence.v1.KeyService')]);
    const watches = [watch(client), watch(client), watch(client, WATCH, keyService)];
    await Promise.all(watches.map((w) => w.first));
    drain.start();
    for (const w of watches) {
      expect(await w.code()).toBe(grpc.status.OK);
      expect(w.data).toEqual([SERVING, NOT_SERVING]);
    }
  });

  it('answers a Watch that starts after the drain began with NOT_SERVING, then ends it with OK', async () => {
    const { client, drain } = await serve();
    drain.start();
    const w = watch(client);
    expect(await w.code()).toBe(grpc.status.OK);
    expect(w.data).toEqual([NOT_SERVING]);
  });

  it('leaves the daemon\'s own calls to drain: only the watches end', async () => {
    const { client, server, drain, own } = await serve();
    const mine = watch(client, OWN);
    const w = watch(client);
    await Promise.all([mine.first, w.first]);
    drain.start();
    expect(await w.code()).toBe(grpc.status.OK);
    const stopping = new Promise<'done'>((resolve) => server.tryShutdown(() => resolve('done')));
    expect(await within(stopping, 'still waiting', 300)).toBe('still waiting');
    expect(mine.data).toEqual([Buffer.from('own')]);
    own[0]!.end();
    expect(await mine.code()).toBe(grpc.status.OK);
    expect(await within(stopping, 'still waiting')).toBe('done');
  });

  it('forgets a Watch its client cancelled', async () => {
    const { client, health } = await serve();
    const w = watch(client);
    await w.first;
    w.call.cancel();
    await w.code();
    await expect.poll(() => open(health)).toBe(0);
  });

  it('still refuses a Watch of a name not the daemon\'s with NOT_FOUND', async () => {
    const { client } = await serve();
    const w = watch(client, WATCH, Buffer.concat([Buffer.from([0x0a, 4]), Buffer.from('junk')]));
    expect(await w.code()).toBe(grpc.status.NOT_FOUND);
    expect(w.data).toEqual([]);
  });

  // Loading grpc-health-check (health.proto parsed by proto-loader) was part of every daemon start's
  // 5 s of package loading under TCG; it now happens at the first health call (lazy-package.ts).
  it('loads the package at the first health call, with the status set before it, and follows later changes', async () => {
    const loaded = vi.spyOn(HealthImplementation.prototype, 'addToServer');
    cleanup.push(() => loaded.mockRestore());
    const { client, drain } = await serve(); // serving() before any call
    expect(loaded).not.toHaveBeenCalled();
    const check = () => new Promise<Buffer | grpc.ServiceError>((resolve) => client.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, Buffer.alloc(0), (e, r) => resolve(e ?? r!)));
    expect(await check()).toEqual(SERVING);
    expect(loaded).toHaveBeenCalledTimes(1);
    drain.start();
    expect(await check()).toEqual(NOT_SERVING);
    expect(loaded).toHaveBeenCalledTimes(1);
  });
});
