/**
 * grpc.health.v1 for the daemon: "" (the whole server) and each of its own services, NOT_SERVING
 * until `serving()`. Registered through guardedServer (foreign-services.ts), for those names only.
 * When the daemon's drain starts (drain.ts), every name turns NOT_SERVING and then the open Watch
 * calls end: a watch never ends by itself, so each would otherwise hold the stop for the whole drain
 * period and then be cut off (CANCELLED), the daemon logging calls still running. The package is
 * loaded at the first health call (lazy-package.ts), with the statuses set until then.
 */
import type * as grpc from '@grpc/grpc-js';
import type { HealthImplementation, ServingStatus } from 'grpc-health-check';
import { createRequire } from 'node:module';
import { Health } from '../../gen/grpc/health/v1/health_pb.js';
import { guardedServer, knownHealthServices } from './foreign-services.js';
import { addLazily, recorder, type Registered } from './lazy-package.js';
import { ApiError, ErrorReason, Status } from './errors.js';
import type { Drain } from './drain.js';

const WATCH = '/grpc.health.v1.Health/Watch';
const require = createRequire(import.meta.url);

type WatchCall = grpc.ServerWritableStream<unknown, unknown>;
type Implementation = grpc.UntypedServiceImplementation;

export class DaemonHealth {
  /** The package's implementation, once a health call loaded it. */
  private health: HealthImplementation | undefined;
  private status: ServingStatus = 'NOT_SERVING';
  private readonly watches = new Set<WatchCall>();

  constructor(server: grpc.Server, private readonly names: readonly string[], private readonly drain: Drain) {
    // Their undecodable requests are refused with INVALID_ARGUMENT, like the daemon's own.
    const unknownService = (message: string) => new ApiError(Status.NOT_FOUND, ErrorReason.INVALID_FIELD, message, { field: 'service' });
    const guarded = guardedServer(server, knownHealthServices(names, unknownService));
    addLazily(guarded, [Health], () => {
      const { HealthImplementation: Implementation } = require('grpc-health-check') as { HealthImplementation: typeof HealthImplementation };
      const health = new Implementation(Object.fromEntries(names.map((n) => [n, this.status])));
      const registered: Registered = new Map();
      health.addToServer(recorder(registered, (service, impl) => this.endingWatches(service, impl)));
      this.health = health;
      return registered;
    });
    // In this order: each watch sees NOT_SERVING before its end (a stream sends its status after
    // the messages written before it).
    drain.onStart(() => {
      this.set('NOT_SERVING');
      for (const call of [...this.watches]) call.end();
    });
  }

  serving(): void {
    this.set('SERVING');
  }

  private set(status: ServingStatus): void {
    this.status = status;
    for (const n of this.names) this.health?.setStatus(n, status);
  }

  /**
   * The package's Watch handler, its calls kept until they end. They end with OK: by health.proto a
   * watch that ends with any status but UNIMPLEMENTED is to be started again (with backoff), so the
   * code carries no verdict; NOT_SERVING, sent just before, is the verdict, and OK ends the stream
   * as finished rather than as an error for clients to report.
   */
  private endingWatches(service: grpc.ServiceDefinition, impl: Implementation): Implementation {
    const entry = Object.entries(service).find(([, m]) => m.path === WATCH);
    if (!entry) return impl;
    // grpc-js looks a handler up by the definition's key or its originalName; so does this.
    const key = impl[entry[0]] ? entry[0] : (entry[1] as { originalName?: string }).originalName;
    const watch = key === undefined ? undefined : (impl[key] as ((call: WatchCall) => void) | undefined);
    if (key === undefined || !watch) return impl;
    return {
      ...impl,
      [key]: (call: WatchCall) => {
        watch(call); // writes the current status
        if (this.drain.draining) return void call.end();
        this.watches.add(call);
        const forget = () => this.watches.delete(call);
        call.on('cancelled', forget);
        call.on('finish', forget);
      },
    };
  }
}
