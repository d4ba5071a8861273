/**
 * grpc-js answers a request body that fails to decode with INTERNAL ("Error deserializing request"),
 * blaming the daemon for the client's bytes. The daemon's deserializers therefore return an
 * UndecodableRequest marker instead of throwing, and the handlers (handler.ts, session.ts) answer it
 * with INVALID_ARGUMENT. The decoder's own message is not passed on: it may quote input values.
 */
import type * as grpc from '@grpc/grpc-js';
import type { DescService } from '@bufbuild/protobuf';
import { serviceDefinition } from '../../rpc/service-definition.js';
import { ApiError, ErrorReason, Status } from './errors.js';

export class UndecodableRequest {
  constructor(readonly typeName: string) {}
}

/** serviceDefinition() whose request deserializers never throw. */
export function daemonServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const def = serviceDefinition(service);
  return Object.fromEntries(
    service.methods.map((method) => {
      const m = def[method.localName]!;
      const decode = m.requestDeserialize;
      const requestDeserialize = (b: Buffer): unknown => {
        try {
          return decode(b);
        } catch {
          return new UndecodableRequest(method.input.typeName);
        }
      };
      return [method.localName, { ...m, requestDeserialize }];
    }),
  ) as grpc.ServiceDefinition;
}

export function undecodable(m: UndecodableRequest): ApiError {
  return new ApiError(Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD, `the request is not a valid ${m.typeName} message (protobuf decoding failed)`, { message_type: m.typeName });
}

/** The message, or the INVALID_ARGUMENT error for one that did not decode. */
export function decoded<T>(m: T): T {
  if (m instanceof UndecodableRequest) throw undecodable(m);
  return m;
}
