/**
 * The standard services generic gRPC tools rely on: grpc.health.v1 (what a health probe calls) and
 * server reflection v1 (what grpcurl lists and describes with), checked with clients built from the
 * services' own .proto files, independently of ringfence's code.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDaemon } from '../support/daemon.js';

const require = createRequire(import.meta.url);
const HEALTH_PROTO = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto');
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

type Ctor = new (address: string, creds: grpc.ChannelCredentials) => grpc.Client & Record<string, (...args: unknown[]) => unknown>;
function serviceClient(proto: string, path: string[], socket: string): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  let pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, enums: String })) as unknown as Record<string, unknown>;
  for (const p of path.slice(0, -1)) pkg = pkg[p] as Record<string, unknown>;
  const C = pkg[path.at(-1)!] as Ctor;
  return new C(`unix:${socket}`, grpc.credentials.createInsecure());
}

describe('standard gRPC services', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
  });
  afterAll(async () => {
    expect(await daemon?.stop()).toBe(0);
  });

  it('grpc.health.v1 reports SERVING for the server and each ringfence service, NOT_FOUND otherwise', async () => {
    const health = serviceClient(HEALTH_PROTO, ['grpc', 'health', 'v1', 'Health'], daemon.socket);
    const check = (service: string) =>
      new Promise<{ status: string } | grpc.ServiceError>((resolve) => (health.Check as (r: unknown, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void)({ service }, (e, r) => resolve(e ?? r)));
    for (const s of ['', 'ringfence.v1.KeyService', 'ringfence.v1.CryptoService', 'ringfence.v1.StatusService']) {
      expect(await check(s)).toEqual({ status: 'SERVING' });
    }
    expect(((await check('no.such.Service')) as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    health.close();
  });

  it('reflection lists the services and serves their file descriptors', async () => {
    const reflection = serviceClient(REFLECTION_PROTO, ['grpc', 'reflection', 'v1', 'ServerReflection'], daemon.socket);
    const ask = (request: Record<string, unknown>) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const call = (reflection.ServerReflectionInfo as () => grpc.ClientDuplexStream<unknown, Record<string, unknown>>)();
        call.on('data', (m) => {
          resolve(m);
          call.end();
        });
        call.on('error', reject);
        call.write(request);
      });
    const list = (await ask({ list_services: '' })) as { list_services_response: { service: { name: string }[] } };
    const names = list.list_services_response.service.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['ringfence.v1.KeyService', 'ringfence.v1.CryptoService', 'ringfence.v1.StatusService', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection']));
    // grpcurl resolves grpc.health.v1.Health/Check through reflection too (review by helper-144).
    const health = (await ask({ file_containing_symbol: 'grpc.health.v1.Health' })) as { file_descriptor_response: { file_descriptor_proto: Buffer[] } };
    expect(health.file_descriptor_response.file_descriptor_proto.map((b) => Buffer.from(b).toString('latin1')).some((b) => b.includes('grpc/health/v1/health.proto') && b.includes('Watch'))).toBe(true);
    const file = (await ask({ file_containing_symbol: 'ringfence.v1.CryptoService' })) as { file_descriptor_response: { file_descriptor_proto: Buffer[] } };
    const blobs = file.file_descriptor_response.file_descriptor_proto.map((b) => Buffer.from(b).toString('latin1'));
    expect(blobs.some((b) => b.includes('ringfence/v1/crypto_service.proto') && b.includes('EncryptStream'))).toBe(true);
    reflection.close();
  });

  it('answers an undecodable request to health or reflection with INVALID_ARGUMENT, not INTERNAL, and keeps serving', async () => {
    const raw = (b: Buffer) => b;
    // A varint tag that never ends: no protobuf decoder accepts it.
    const garbage = Buffer.from('ffffffff', 'hex');
    const c = new grpc.Client(`unix:${daemon.socket}`, grpc.credentials.createInsecure());
    const check = await new Promise<grpc.ServiceError | null>((resolve) => c.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, garbage, (e) => resolve(e)));
    expect([check?.code, check?.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'the request is not a valid grpc.health.v1.HealthCheckRequest message (protobuf decoding failed)']);
    const ended = (call: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>) => {
      call.on('data', () => {});
      call.on('error', () => {});
      return new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    };
    expect((await ended(c.makeServerStreamRequest('/grpc.health.v1.Health/Watch', raw, raw, garbage))).code).toBe(grpc.status.INVALID_ARGUMENT);
    const reflect = c.makeBidiStreamRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', raw, raw);
    const status = ended(reflect);
    reflect.write(garbage);
    reflect.end();
    expect((await status).code).toBe(grpc.status.INVALID_ARGUMENT);
    // Still serving: an empty HealthCheckRequest asks about the server as a whole (SERVING = 1).
    const ok = await new Promise<Buffer | grpc.ServiceError>((resolve) => c.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, Buffer.alloc(0), (e, r) => resolve(e ?? r!)));
    expect(ok).toEqual(Buffer.from('0801', 'hex'));
    c.close();
  });
});
