/**
 * Registers a gRPC package's services (grpc-health-check, @grpc/reflection) at start, and loads the
 * package only when one of its methods is first called. Loading them at start parsed their .proto
 * files with proto-loader (health.proto once, reflection.proto twice) and indexed every file the
 * daemon serves twice: 5 of the 12-15 s of CPU a daemon start took under qemu TCG (A/B in one lts
 * guest, 2026-12-07), paid by every start — a restart after kill -9, each test's daemon — while only
 * health probes and grpcurl-like tools ever call them.
 *
 * The methods are described from the daemon's generated descriptors (the same services: reflection
 * .test.ts checks that they match what the packages register); each method's (de)serializers and
 * handler are the package's own, taken from what its addToServer registers once loaded.
 */
import type * as grpc from '@grpc/grpc-js';
import type { DescService } from '@bufbuild/protobuf';
import { Status } from './errors.js';

type Definition = grpc.MethodDefinition<unknown, unknown>;
type Handler = (...args: never[]) => void;

/** What a package's addToServer registered, by method path. */
export type Registered = Map<string, { definition: Definition; handler: Handler }>;

/** A server for a package's addToServer that records its methods instead of serving them. */
export function recorder(into: Registered, wrap: (service: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) => grpc.UntypedServiceImplementation = (_s, impl) => impl): grpc.Server {
  return {
    addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
      const impl = wrap(service, implementation);
      for (const [key, definition] of Object.entries(service)) {
        // grpc-js looks a handler up by the definition's key or its originalName; so does this.
        const handler = (impl[key] ?? impl[(definition as { originalName?: string }).originalName ?? '']) as Handler | undefined;
        if (handler) into.set(definition.path, { definition: definition as Definition, handler });
      }
    },
  } as unknown as grpc.Server;
}

/** Answers a call whose package failed to load: INTERNAL, saying which and why. */
function failCall(args: readonly unknown[], path: string, err: unknown): void {
  const error = Object.assign(new Error(`${path} is not available: its package failed to load (${err instanceof Error ? err.message : String(err)})`), { code: Status.INTERNAL });
  const [call, callback] = args as [{ emit(event: 'error', e: Error): void }, ((e: Error) => void) | undefined];
  if (typeof callback === 'function') callback(error);
  else call.emit('error', error);
}

/**
 * Adds `services` to `server`; `load` (called once, at the first call or request to decode) loads
 * the package and returns what it registers. A load that fails is not tried again: every later
 * call fails with the same reason (a package missing from the install does not appear later).
 */
export function addLazily(server: Pick<grpc.Server, 'addService'>, services: readonly DescService[], load: () => Registered): void {
  let loaded: Registered | undefined;
  let failure: { reason: unknown } | undefined;
  const method = (path: string) => {
    if (failure) throw failure.reason;
    try {
      loaded ??= load();
    } catch (reason) {
      failure = { reason };
      throw reason;
    }
    const m = loaded.get(path);
    if (!m) throw new Error(`the package registered no ${path}`);
    return m;
  };
  for (const service of services) {
    const definition: Record<string, Definition & { originalName: string; requestType: { type: { name: string } } }> = {};
    const handlers: Record<string, Handler> = {};
    for (const m of service.methods) {
      const path = `/${service.typeName}/${m.name}`;
      definition[m.name] = {
        path,
        requestStream: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
        responseStream: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
        originalName: m.localName,
        // What foreign-services.ts names an undecodable request by, as proto-loader's definitions say it.
        requestType: { type: { name: m.input.name } },
        requestSerialize: (v: unknown) => method(path).definition.requestSerialize(v),
        requestDeserialize: (b: Buffer) => method(path).definition.requestDeserialize(b),
        responseSerialize: (v: unknown) => method(path).definition.responseSerialize(v),
        responseDeserialize: (b: Buffer) => method(path).definition.responseDeserialize(b),
      };
      handlers[m.name] = ((...args: never[]) => {
        let handler: Handler;
        try {
          handler = method(path).handler;
        } catch (err) {
          // A package that cannot load (an install without it) fails its calls, not the daemon.
          return failCall(args, path, err);
        }
        handler(...args);
      }) as Handler;
    }
    server.addService(definition as unknown as grpc.ServiceDefinition, handlers as unknown as grpc.UntypedServiceImplementation);
  }
}
