// Server reflection as the daemon serves it: it lists and resolves grpc.health.v1.Health and the
// reflection services besides the daemon's own, so grpcurl (which resolves every method through
// reflection) can call Health/Check; the daemon's own files are served byte for byte as before.
// Review by helper-144.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { create, createFileRegistry, fromBinary, toBinary, type DescFile, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../../gen/ringfence/v1/status_service_pb.js';
import { addReflection, FOREIGN_SERVICES } from './reflection.js';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');
const SERVICES = [KeyService, CryptoService, StatusService];
const raw = (b: Buffer) => b;

interface Response {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}
type Reflection = grpc.MethodDefinition<Record<string, unknown>, Response>;
const reflectionMethod = (
  grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true })) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: { service: { ServerReflectionInfo: Reflection } } } } };
  }
).grpc.reflection.v1.ServerReflection.service.ServerReflectionInfo;

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.reverse()) c();
  cleanup = [];
});

/** A server with health and reflection as the daemon registers reflection; its socket's path. */
async function serveAt(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-reflection-'));
  const server = new grpc.Server();
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  addReflection(server, SERVICES);
  const socket = join(dir, 's.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }), () => server.forceShutdown());
  return socket;
}

async function serve(): Promise<grpc.Client> {
  const client = new grpc.Client(`unix:${await serveAt()}`, grpc.credentials.createInsecure());
  cleanup.push(() => client.close());
  return client;
}

function ask(c: grpc.Client, request: Record<string, unknown>): Promise<Response> {
  const m = reflectionMethod;
  const call = c.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize);
  return new Promise((resolve, reject) => {
    call.on('data', (r: Response) => {
      resolve(r);
      call.end();
    });
    call.on('error', reject);
    call.write(request);
  });
}

/** The files of the answer to file_containing_symbol; fails on an error answer. */
async function filesOf(c: grpc.Client, symbol: string): Promise<FileDescriptorProto[]> {
  const r = await ask(c, { file_containing_symbol: symbol });
  expect(r.error_response).toBeUndefined();
  return r.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/** The files the services need, by name. */
function filesNeeded(services: readonly DescService[]): Map<string, DescFile> {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    f.dependencies.forEach(visit);
  };
  services.forEach((s) => visit(s.file));
  return seen;
}

/** "path kind" of each method a package's addToServer registers. */
function registered(addToServer: (server: grpc.Server) => void): string[] {
  const methods: string[] = [];
  const recorder = {
    addService(service: grpc.ServiceDefinition) {
      for (const m of Object.values(service)) methods.push(`${m.path} ${m.requestStream ? (m.responseStream ? 'bidi' : 'client') : m.responseStream ? 'server' : 'unary'}`);
    },
  };
  addToServer(recorder as unknown as grpc.Server);
  return methods;
}

describe('server reflection of every service the daemon serves', () => {
  it('lists the daemon\'s services, grpc.health.v1.Health and both reflection services', async () => {
    const c = await serve();
    const r = await ask(c, { list_services: '' });
    expect(r.list_services_response?.service.map((s) => s.name).sort()).toEqual(
      ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection', ...SERVICES.map((s) => s.typeName)].sort(),
    );
  });

  it('resolves grpc.health.v1.Health and the reflection services, from the files other servers serve them in', async () => {
    const c = await serve();
    const health = await filesOf(c, 'grpc.health.v1.Health');
    expect(health.map((f) => f.name)).toEqual(['grpc/health/v1/health.proto']);
    expect(health[0]!.service.map((s) => [s.name, s.method.map((m) => m.name)])).toEqual([['Health', ['Check', 'Watch', 'List']]]);
    expect((await filesOf(c, 'grpc.health.v1.Health.Check')).map((f) => f.name)).toEqual(['grpc/health/v1/health.proto']);
    expect((await filesOf(c, 'grpc.reflection.v1.ServerReflection')).map((f) => f.name)).toEqual(['grpc/reflection/v1/reflection.proto']);
    expect((await filesOf(c, 'grpc.reflection.v1alpha.ServerReflection')).map((f) => f.name)).toEqual(['grpc/reflection/v1alpha/reflection.proto']);
  });

  it('lets a client that knows only reflection call grpc.health.v1.Health/Check, as grpcurl does', async () => {
    const c = await serve();
    const files = await filesOf(c, 'grpc.health.v1.Health');
    // What Go's protobuf, and so grpcurl, requires besides: fully-qualified type names and map
    // entries named after their field (proto-loader's descriptors have neither).
    const list = files[0]!.messageType.find((m) => m.name === 'HealthListResponse')!;
    expect(list.nestedType.map((m) => m.name)).toEqual(['StatusesEntry']);
    expect(list.field[0]!.typeName).toBe('.grpc.health.v1.HealthListResponse.StatusesEntry');
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: files }));
    const check = registry.getService('grpc.health.v1.Health')!.methods.find((m) => m.name === 'Check')!;
    const input = check.input as DescMessage;
    const request = Buffer.from(toBinary(input, create(input, { service: '' })));
    const response = await new Promise<Buffer>((resolve, reject) =>
      c.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, request, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    const status = (fromBinary(check.output, response) as unknown as { status: number }).status;
    expect(registry.getEnum('grpc.health.v1.HealthCheckResponse.ServingStatus')?.value[status]?.name).toBe('SERVING');
  });

  it('serves every file byte for byte as generated, the daemon\'s own as before, each with its imports', async () => {
    const c = await serve();
    for (const [name, f] of filesNeeded([...SERVICES, ...FOREIGN_SERVICES])) {
      const r = await ask(c, { file_by_filename: name });
      expect(r.file_descriptor_response?.file_descriptor_proto[0]).toEqual(Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
    }
    for (const s of [...SERVICES, ...FOREIGN_SERVICES]) {
      const files = await filesOf(c, s.typeName);
      expect(new Set(files.map((f) => f.name))).toEqual(new Set(filesNeeded([s]).keys()));
    }
  });

  it('describes exactly the methods the health and reflection packages serve (proto/grpc/ is theirs)', () => {
    const described = FOREIGN_SERVICES.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name} ${m.methodKind.replace('_streaming', '')}`));
    const served = [...registered((s) => new HealthImplementation().addToServer(s)), ...registered((s) => new ReflectionService({}).addToServer(s))];
    expect(described.sort()).toEqual(served.sort());
  });
});

describe('loading reflection', () => {
  // Loading the package (reflection.proto parsed twice, every file decoded twice) was about 2 s of
  // each daemon start under qemu TCG; it now happens at the first reflection call, once.
  it('builds the package\'s index at the first reflection call, not when registered, and only once', async () => {
    const { ReflectionV1Implementation } = require('@grpc/reflection/build/src/implementations/reflection-v1.js') as { ReflectionV1Implementation: { prototype: { addToServer: () => unknown } } };
    const built = vi.spyOn(ReflectionV1Implementation.prototype, 'addToServer');
    cleanup.push(() => built.mockRestore());
    const c = await serve();
    expect(built).not.toHaveBeenCalled();
    expect((await ask(c, { list_services: '' })).list_services_response?.service.length).toBeGreaterThan(3);
    expect((await filesOf(c, 'ringfence.v1.CryptoService')).length).toBeGreaterThan(0);
    expect(built).toHaveBeenCalledTimes(1);
  });
});

describe('a reflection stream whose client does not read', () => {
  // Reflection answered every request as it came, whatever write() said: a client that sent
  // requests and read nothing had all the answers (tens of KiB each) queued, and one such stream
  // took the daemon's heap (review by helper-150). Now the call stops reading while answers wait.
  it('stops taking requests while its answers wait, and answers every one once the client reads', { timeout: 30_000 }, async () => {
    const { ReflectionV1Implementation } = require('@grpc/reflection/build/src/implementations/reflection-v1.js') as { ReflectionV1Implementation: { prototype: { handleServerReflectionRequest: () => unknown } } };
    const handled = vi.spyOn(ReflectionV1Implementation.prototype, 'handleServerReflectionRequest');
    cleanup.push(() => handled.mockRestore());
    const socket = await serveAt();
    // A raw HTTP/2 client whose streams' windows are 0: the server may send no answer's bytes.
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket), settings: { initialWindowSize: 0 } });
    cleanup.push(() => session.destroy());
    const stream = session.request({ ':method': 'POST', ':path': reflectionMethod.path, 'content-type': 'application/grpc', te: 'trailers' });
    const N = 300;
    const message = reflectionMethod.requestSerialize({ file_containing_symbol: 'ringfence.v1.CryptoService' });
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    stream.end(Buffer.concat(Array.from({ length: N }, () => frame)));
    await new Promise((r) => setTimeout(r, 500));
    const whileBlocked = handled.mock.calls.length;
    expect(whileBlocked).toBeGreaterThan(0);
    expect(whileBlocked).toBeLessThanOrEqual(5); // before: all 300
    // The client reads: every request is answered, none lost.
    let received = Buffer.alloc(0);
    stream.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    session.settings({ initialWindowSize: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      stream.on('close', resolve);
      stream.on('error', reject);
    });
    let answers = 0;
    for (let at = 0; at < received.length; at += 5 + received.readUInt32BE(at + 1)) answers++;
    expect(answers).toBe(N);
    expect(handled.mock.calls.length).toBe(N);
  });
});
