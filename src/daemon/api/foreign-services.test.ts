import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { guardedServer, knownHealthServices } from './foreign-services.js';
import { ApiError, ErrorReason, Status } from './errors.js';
import { Drain } from './drain.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');
const HEALTH_PROTO = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto');

// A varint tag that never ends: no protobuf decoder accepts it (protobufjs does accept a string
// field cut short, so "declares 5 bytes, has 1" would not do).
const GARBAGE = Buffer.from('ffffffff', 'hex');
const raw = (b: Buffer) => b;
const CHECK = '/grpc.health.v1.Health/Check';
const WATCH = '/grpc.health.v1.Health/Watch';
const REFLECT = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

let health: HealthImplementation;

async function serve(guard: boolean, onlyKnown = false, drain?: Drain): Promise<grpc.Client> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-foreign-'));
  const server = new grpc.Server();
  const notFound = (message: string) => new ApiError(Status.NOT_FOUND, ErrorReason.INVALID_FIELD, message, { field: 'service' });
  const target = guard ? (guardedServer(server, onlyKnown ? knownHealthServices(['', 'ringfence.v1.KeyService'], notFound) : undefined, drain) as grpc.Server) : server;
  health = new HealthImplementation({ '': 'SERVING', 'ringfence.v1.KeyService': 'SERVING' });
  health.addToServer(target);
  new ReflectionService(protoLoader.loadSync(HEALTH_PROTO)).addToServer(target);
  const socket = join(dir, 's.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }), () => server.forceShutdown(), () => client.close());
  return client;
}

const unary = (c: grpc.Client, path: string, body: Buffer) =>
  new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) => c.makeUnaryRequest(path, raw, raw, body, (err, res) => resolve({ err, res })));

/** Writes the bodies, half-closes; the responses and the final status. */
function stream(c: grpc.Client, path: string, bodies: Buffer[], bidi: boolean): Promise<{ data: Buffer[]; status: grpc.StatusObject }> {
  const call = bidi ? c.makeBidiStreamRequest(path, raw, raw) : c.makeServerStreamRequest(path, raw, raw, bodies[0]!);
  const data: Buffer[] = [];
  call.on('data', (d: Buffer) => {
    data.push(d);
    // A health watch never ends by itself: one update is all there is to see.
    if (!bidi) call.cancel();
  });
  call.on('error', () => {});
  if (bidi) {
    const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
    for (const b of bodies) duplex.write(b);
    duplex.end();
  }
  return new Promise((resolve) => call.on('status', (status: grpc.StatusObject) => resolve({ data, status })));
}

describe('health and reflection registered through guardedServer', () => {
  it('without the guard, grpc-js blames itself (INTERNAL) for an undecodable body: what the guard is for', async () => {
    const c = await serve(false);
    expect((await unary(c, CHECK, GARBAGE)).err?.code).toBe(grpc.status.INTERNAL);
  });

  it('refuses an undecodable Health.Check with INVALID_ARGUMENT naming the message type, and still answers a valid one', async () => {
    const c = await serve(true);
    const { err } = await unary(c, CHECK, GARBAGE);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toBe('the request is not a valid grpc.health.v1.HealthCheckRequest message (protobuf decoding failed)');
    // An empty body is a valid HealthCheckRequest for service "": SERVING is status 1 (field 1, varint).
    const ok = await unary(c, CHECK, Buffer.alloc(0));
    expect(ok.err).toBeNull();
    expect(ok.res).toEqual(Buffer.from('0801', 'hex'));
  });

  it('refuses an undecodable Health.Watch with INVALID_ARGUMENT, and still streams a valid one', async () => {
    const c = await serve(true);
    const bad = await stream(c, WATCH, [GARBAGE], false);
    expect(bad.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.data).toEqual([]);
    const good = await stream(c, WATCH, [Buffer.alloc(0)], false);
    expect(good.data).toEqual([Buffer.from('0801', 'hex')]);
  });

  it('ends a reflection stream at its first undecodable request with INVALID_ARGUMENT, after answering the valid ones', async () => {
    const c = await serve(true);
    const types = grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true })) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: { service: Record<string, grpc.MethodDefinition<object, { list_services_response?: { service: { name: string }[] } }>> } } } };
    };
    const m = types.grpc.reflection.v1.ServerReflection.service.ServerReflectionInfo!;
    const list = m.requestSerialize({ list_services: '' });
    const r = await stream(c, REFLECT, [list, GARBAGE, list], true);
    expect(r.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(r.status.details).toBe('the request is not a valid grpc.reflection.v1.ServerReflectionRequest message (protobuf decoding failed)');
    expect(r.data).toHaveLength(1);
    expect(m.responseDeserialize(r.data[0]!).list_services_response?.service.map((s) => s.name)).toContain('grpc.health.v1.Health');
    // A stream of valid requests still ends OK.
    const fine = await stream(c, REFLECT, [list, list], true);
    expect(fine.status.code).toBe(grpc.status.OK);
    expect(fine.data).toHaveLength(2);
  });

  it('answers a reflection stream still open when the daemon\'s drain period ends UNAVAILABLE / SHUTTING_DOWN, not reset', async () => {
    const drain = new Drain();
    const c = await serve(true, false, drain);
    const list = Buffer.from([0x3a, 0]); // list_services = 7: ""
    const call = c.makeBidiStreamRequest(REFLECT, raw, raw);
    const data: Buffer[] = [];
    call.on('data', (d: Buffer) => data.push(d));
    call.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.write(list);
    await expect.poll(() => data.length).toBe(1);
    drain.cutOff(); // the client holds its stream open
    const s = await status;
    expect({ code: grpc.status[s.code], details: s.details }).toEqual({ code: 'UNAVAILABLE', details: expect.stringMatching(/^the daemon stopped before this call ended.*send them again to the restarted daemon$/) });
    expect(decodeStatusDetails(s.metadata)?.reason).toBe(ErrorReason.SHUTTING_DOWN);
  });
});

describe('health for the daemon\'s own services only', () => {
  // HealthCheckRequest { service = 1 }: a length-delimited string.
  const request = (service: string) => Buffer.concat([Buffer.from([0x0a]), encodeLength(Buffer.byteLength(service)), Buffer.from(service)]);
  const watched = () => (health as unknown as { watchers: Map<string, unknown> }).watchers;

  it('without the filter, grpc-health-check keeps every name a Watch asked about, after the call ends: what the filter is for', async () => {
    const c = await serve(true);
    for (let i = 0; i < 20; i++) await stream(c, WATCH, [request(`junk-${i}-${'x'.repeat(1000)}`)], false);
    expect([...watched().keys()].filter((k) => k.startsWith('junk-'))).toHaveLength(20);
  });

  it('refuses Check and Watch of another name with NOT_FOUND, keeps nothing, and answers the known ones', async () => {
    const c = await serve(true, true);
    const name = `junk-${'x'.repeat(100_000)}`;
    const check = await unary(c, CHECK, request(name));
    expect(check.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(check.err?.details).toBe('no service of that name here; the health service knows "", "ringfence.v1.KeyService"');
    const watch = await stream(c, WATCH, [request(name)], false);
    expect(watch.status.code).toBe(grpc.status.NOT_FOUND);
    expect([...watched().keys()].filter((k) => k.startsWith('junk-'))).toEqual([]);
    expect((await unary(c, CHECK, request('ringfence.v1.KeyService'))).res).toEqual(Buffer.from('0801', 'hex'));
    expect((await stream(c, WATCH, [Buffer.alloc(0)], false)).data).toEqual([Buffer.from('0801', 'hex')]);
  });
});

function encodeLength(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
