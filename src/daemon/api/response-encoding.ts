/**
 * What the daemon's answers say about compression: it takes only uncompressed messages
 * (call-limit.ts refuses the others UNIMPLEMENTED) and sends only uncompressed ones.
 *
 * grpc-js put `grpc-accept-encoding: identity,deflate,gzip` in the response headers of every call
 * (server-interceptors.js defaultCompressionHeaders), so clients that pick their compression from
 * the server's word (grpc-js with `grpc.default_compression_algorithm`) were told deflate and gzip
 * are taken, and then refused, call after call (review by helper-201). The project's grpc-js patch
 * (patches/) makes that default `identity`: every answer with response headers says so, at no cost
 * per call (an interceptor layer on every call would be one). grpc-js never compresses a response.
 *
 * Trailers-only answers (a handler's error before any message, an unknown method, a message over
 * maxMessageBytes) carry no encoding headers in grpc-js: they advertise no compression either.
 * call-limit.ts's refusal of a compressed call sends response headers naming identity, since
 * grpc-js clients read what a server takes only from those.
 */
import * as grpc from '@grpc/grpc-js';

/** Sets, in response headers, that the daemon takes only identity. */
export function advertiseIdentity(metadata: grpc.Metadata): grpc.Metadata {
  metadata.set('grpc-accept-encoding', 'identity');
  return metadata;
}
