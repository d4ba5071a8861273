// Registering a package's services without loading it: loaded once, at the first call, and a
// package that cannot load fails its calls with INTERNAL instead of throwing in grpc-js's handler
// path (which would end the daemon).
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Health } from '../../gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../gen/grpc/reflection/v1/reflection_pb.js';
import { addLazily, recorder, type Registered } from './lazy-package.js';

const raw = (b: Buffer) => b;
// HealthCheckResponse { status = SERVING (1) }.
const SERVING = Buffer.from('0801', 'hex');

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

async function serve(load: () => Registered): Promise<grpc.Client> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-lazy-'));
  const server = new grpc.Server();
  addLazily(server, [Health, ServerReflection], load);
  const socket = join(dir, 's.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }), () => server.forceShutdown(), () => client.close());
  return client;
}

const check = (c: grpc.Client) => new Promise<Buffer | grpc.ServiceError>((resolve) => c.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, Buffer.alloc(0), (e, r) => resolve(e ?? r!)));

function watchFirst(c: grpc.Client): Promise<Buffer | grpc.ServiceError> {
  const call = c.makeServerStreamRequest('/grpc.health.v1.Health/Watch', raw, raw, Buffer.alloc(0));
  return new Promise((resolve) => {
    call.on('data', (d: Buffer) => {
      resolve(d);
      call.cancel();
    });
    call.on('error', resolve);
  });
}

describe('a package registered lazily', () => {
  it('is loaded once, at the first call, and its own handlers answer every method', async () => {
    let loads = 0;
    const c = await serve(() => {
      loads++;
      const registered: Registered = new Map();
      new HealthImplementation({ '': 'SERVING' }).addToServer(recorder(registered));
      return registered;
    });
    expect(loads).toBe(0);
    expect(await check(c)).toEqual(SERVING);
    expect(await watchFirst(c)).toEqual(SERVING);
    expect(await check(c)).toEqual(SERVING);
    expect(loads).toBe(1);
  });

  it('answers INTERNAL, naming the method, when the package cannot load, and goes on serving', async () => {
    let loads = 0;
    const c = await serve(() => {
      loads++;
      throw new Error("Cannot find module '@grpc/reflection'");
    });
    const call = c.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', raw, raw);
    const status = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    expect([status.code, status.details]).toEqual([grpc.status.INTERNAL, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo is not available: its package failed to load (Cannot find module '@grpc/reflection')"]);
    // A unary call fails while decoding its request (grpc-js answers that INTERNAL itself).
    expect((await check(c)) as grpc.ServiceError).toMatchObject({ code: grpc.status.INTERNAL });
    expect((await check(c)) as grpc.ServiceError).toMatchObject({ code: grpc.status.INTERNAL });
    const again = c.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', raw, raw);
    expect((await new Promise<grpc.ServiceError>((resolve) => again.on('error', resolve))).details).toContain('its package failed to load');
    // Tried once: a failed require is not cached by Node, and a missing package does not appear later.
    expect(loads).toBe(1);
  });

  it('serves a package missing a method it was registered for as that method failing, not the others', async () => {
    const c = await serve(() => new Map()); // registered nothing
    expect((await watchFirst(c)) as grpc.ServiceError).toMatchObject({ code: grpc.status.INTERNAL });
  });
});
