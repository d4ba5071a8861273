/**
 * Services from other packages (grpc.health.v1, server reflection) registered with the daemon's own
 * rule for undecodable requests (decode.ts): a body that is not a valid message is the caller's
 * error, INVALID_ARGUMENT, not the INTERNAL grpc-js answers when a deserializer throws. The packages
 * only call server.addService, so they are handed a server whose addService wraps definition and
 * handlers; nothing else of theirs changes.
 */
import type * as grpc from '@grpc/grpc-js';
import { UndecodableRequest, undecodable } from './decode.js';
import { cutOff, type ApiError } from './errors.js';
import type { Drain } from './drain.js';
import { limitReadAhead, limitWriteBehind } from './handler.js';

/** A check of a decoded request (unary and server-streaming methods) before the package sees it. */
export type Admit = (path: string, request: unknown) => ApiError | undefined;

type AnyDefinition = grpc.MethodDefinition<unknown, unknown> & { originalName?: string; requestType?: { type?: { name?: string } } };
type AnyHandler = (...args: never[]) => void;

/** The name a refusal gives the request: the package's message type, else the method path. */
function requestName(m: AnyDefinition): string {
  const type = m.requestType?.type?.name;
  return type ? `${m.path.split('/')[1]?.replace(/\.[^.]*$/, '')}.${type}` : `request of ${m.path}`;
}

function guardHandler(m: AnyDefinition, handler: AnyHandler, admit: Admit, drain: Drain | undefined): AnyHandler {
  if (!m.requestStream) {
    // The one request is decoded before the handler runs: refuse it instead of calling the handler.
    const refusal = (request: unknown) => (request instanceof UndecodableRequest ? undecodable(request) : admit(m.path, request));
    if (!m.responseStream) {
      return ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const refused = refusal(call.request);
        if (refused) callback(refused.toServiceError());
        else (handler as grpc.handleUnaryCall<unknown, unknown>)(call, callback);
      }) as AnyHandler;
    }
    return ((call: grpc.ServerWritableStream<unknown, unknown>) => {
      const refused = refusal(call.request);
      if (refused) call.emit('error', refused.toServiceError());
      else (handler as grpc.handleServerStreamingCall<unknown, unknown>)(call);
    }) as AnyHandler;
  }
  // Streamed requests arrive as 'data' events to the package's listeners: the first undecodable one
  // ends the call with its status, and nothing after it reaches them.
  return ((call: grpc.ServerReadableStream<unknown, unknown>) => {
    if (m.responseStream) holdBackWhileAnswersWait(call as unknown as grpc.ServerDuplexStream<unknown, unknown>);
    const emit = call.emit.bind(call) as (event: string | symbol, ...args: unknown[]) => boolean;
    let refused = false;
    call.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (refused && (event === 'data' || event === 'end')) return false;
      if (event === 'data' && args[0] instanceof UndecodableRequest) {
        refused = true;
        return emit('error', undecodable(args[0]).toServiceError());
      }
      return emit(event, ...args);
    }) as typeof call.emit;
    // A reflection stream its client holds open past the daemon's drain period (drain.ts): answered
    // UNAVAILABLE then, nothing more read, rather than reset (which reads as CANCELLED).
    if (m.responseStream && drain) {
      const uncut = drain.onCutOff(() => {
        if (refused) return; // answered already
        refused = true;
        emit('error', cutOff('requests not answered were not answered: send them again to the restarted daemon').toServiceError());
      });
      call.on('close', uncut);
    }
    (handler as (c: typeof call) => void)(call);
  }) as AnyHandler;
}

/**
 * Reflection answers each request as it arrives (`stream.on('data', m => stream.write(answer))`)
 * and ignores write()'s backpressure: a client that sent requests and never read had every answer
 * queued, and one such stream took the daemon's heap (review by helper-150). The call stops reading
 * (so HTTP/2 flow control holds the client back) while two answers wait unflushed, and goes on at
 * 'drain'; at most one request is read ahead.
 */
function holdBackWhileAnswersWait(call: grpc.ServerDuplexStream<unknown, unknown>): void {
  limitReadAhead(call);
  limitWriteBehind(call, 2);
  const write = call.write.bind(call) as (...args: unknown[]) => boolean;
  let held = false;
  call.write = ((...args: unknown[]) => {
    const room = write(...args);
    if (!room && !held) {
      held = true;
      call.pause();
      call.once('drain', () => {
        held = false;
        call.resume();
      });
    }
    return room;
  }) as typeof call.write;
}

/**
 * The server as a package's addToServer sees it: addService registers guarded definitions. With
 * `drain`, streamed calls still open at the end of the daemon's drain period are answered UNAVAILABLE.
 */
export function guardedServer(server: grpc.Server, admit: Admit = () => undefined, drain?: Drain): Pick<grpc.Server, 'addService'> {
  return {
    addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
      const definition: Record<string, AnyDefinition> = {};
      const handlers: Record<string, AnyHandler> = {};
      for (const [name, m] of Object.entries(service as Record<string, AnyDefinition>)) {
        const decode = m.requestDeserialize;
        const what = requestName(m);
        definition[name] = {
          ...m,
          requestDeserialize: (b: Buffer) => {
            try {
              return decode(b);
            } catch {
              return new UndecodableRequest(what);
            }
          },
        };
        // grpc-js looks a handler up by the definition's key or its originalName; so does this.
        const handler = (implementation[name] ?? (m.originalName ? implementation[m.originalName] : undefined)) as AnyHandler | undefined;
        if (handler) handlers[name] = guardHandler(m, handler, admit, drain);
      }
      server.addService(definition as grpc.ServiceDefinition, handlers as grpc.UntypedServiceImplementation);
    },
  };
}

/**
 * For grpc-health-check: only the daemon's own service names. The package keeps an entry for every
 * name a Watch ever asked about, also after the call ends, so arbitrary names from clients would
 * grow the daemon's memory without bound.
 */
export function knownHealthServices(names: readonly string[], notFound: (message: string) => ApiError): Admit {
  const known = new Set(names);
  return (_path, request) => {
    const service = (request as { service?: unknown } | null)?.service;
    if (typeof service !== 'string' || known.has(service)) return undefined;
    return notFound(`no service of that name here; the health service knows ${[...known].map((n) => `"${n}"`).join(', ')}`);
  };
}
