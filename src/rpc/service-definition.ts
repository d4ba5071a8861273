/**
 * grpc-js service definitions built from protobuf-es descriptors, shared by the daemon and the SDK.
 * protobuf-es v2 generates descriptors only (no grpc-js stubs); each method's path, streaming kind
 * and (de)serializers come from the descriptor, so the wire contract is exactly proto/.
 */
import type * as grpc from '@grpc/grpc-js';
import { fromBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from '@bufbuild/protobuf';
import { decodeMessage } from './binary-decode.js';
import { encodeMessage } from './binary-encode.js';

/** A method as grpc-js sees it: path, streaming flags, and protobuf-es message (de)serializers. */
export type MethodDefinition = grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>;

/** Binary decoding rejects malformed input by throwing; protobuf-es' decoder is the validator. A
 * server's grpc-js would turn that into INTERNAL; the daemon wraps these (src/daemon/api/decode.ts). */
export function methodDefinition(method: DescMethod): MethodDefinition {
  const { input, output } = method;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
    responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
    requestSerialize: (m) => encodeMessage(input, m),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => encodeMessage(output, m),
    // The one-pass decoder where it can (binary-decode.ts); protobuf-es, more lenient, for the rest.
    responseDeserialize: (b) => decodeMessage(output, b) ?? fromBinary(output, b),
    originalName: method.localName,
  };
}

/** `{ [method.localName]: definition }` for grpc.Server#addService and makeGenericClientConstructor. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  return Object.fromEntries(service.methods.map((m) => [m.localName, methodDefinition(m)])) as grpc.ServiceDefinition;
}
