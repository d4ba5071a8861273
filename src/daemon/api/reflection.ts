/**
 * Server reflection (v1 and v1alpha; grpcurl resolves every method through it) for every service
 * the daemon serves: its own, grpc.health.v1.Health and the reflection services themselves, as
 * other gRPC servers list them. Registered through guardedServer (foreign-services.ts).
 *
 * The health and reflection files are grpc-proto's, generated like the daemon's own (proto/grpc/),
 * not the ones proto-loader makes for their packages: those name files after packages
 * (grpc_health_v1.proto), leave type names relative and misname map entries, which Go's protobuf,
 * and so grpcurl, refuses ("invalid map: incorrect implicit map entry name").
 */
import type * as grpc from '@grpc/grpc-js';
import type { ReflectionService } from '@grpc/reflection';
import { createRequire } from 'node:module';
import { toBinary, type DescFile, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Health } from '../../gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ServerReflectionV1Alpha } from '../../gen/grpc/reflection/v1alpha/reflection_pb.js';
import { guardedServer } from './foreign-services.js';
import { addLazily, recorder, type Registered } from './lazy-package.js';
import type { Drain } from './drain.js';

const require = createRequire(import.meta.url);

/** The services of other packages the daemon serves beside its own. */
export const FOREIGN_SERVICES: readonly DescService[] = [Health, ServerReflection, ServerReflectionV1Alpha];

type ReflectedPackage = ConstructorParameters<typeof ReflectionService>[0];

/**
 * Registers reflection of `services` (the daemon's own) and of FOREIGN_SERVICES; `drain`:
 * foreign-services.ts guardedServer. The package is loaded, and its index built, at the first
 * reflection call (lazy-package.ts).
 */
export function addReflection(server: grpc.Server, services: readonly DescService[], drain?: Drain): void {
  addLazily(guardedServer(server, undefined, drain), [ServerReflection, ServerReflectionV1Alpha], () => {
    const { ReflectionService: Service } = require('@grpc/reflection') as { ReflectionService: typeof ReflectionService };
    const fileDescriptorProtos = filesOf([...services, ...FOREIGN_SERVICES]);
    // @grpc/reflection reads only `fileDescriptorProtos` from each entry of a proto-loader package.
    const pkg = { ringfence: { format: 'Protocol Buffer 3 FileDescriptorProto', type: {}, fileDescriptorProtos } };
    const registered: Registered = new Map();
    new Service(pkg as unknown as ReflectedPackage).addToServer(recorder(registered));
    return registered;
  });
}

/** Every file the services need, dependencies first, encoded. */
function filesOf(services: readonly DescService[]): Buffer[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    for (const d of f.dependencies) visit(d);
    seen.set(f.name, f);
  };
  for (const s of services) visit(s.file);
  return [...seen.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
}
