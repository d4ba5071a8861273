/**
 * grpc-js answers a request body that fails to decode with INTERNAL ("Error deserializing request"),
 * blaming the daemon for the client's bytes. The daemon's deserializers therefore return an
 * UndecodableRequest marker instead of throwing, and the handlers (handler.ts, session.ts) answer it
 * with INVALID_ARGUMENT. The decoder's own message is not passed on: it may quote input values.
 *
 * Decoding is also where a small request becomes a large heap: a message of a few MiB made of
 * two-byte entries (empty batch items, Session `more` items, unknown fields) decodes into millions
 * of objects, about 200x its size, before any handler could look at the item limit. So the top
 * level is counted on the wire first (a message with more fields than a batch may have items is
 * refused undecoded; a Session message's operations are counted at every depth of `more`), and
 * unknown fields are skipped rather than kept. The counts are only worth anything because the bytes
 * must also have the wire shape of their schema at every depth (rpc/binary-decode.ts, which decodes
 * them in the same pass): protobuf-es reads a mistyped field differently from the wire format, which
 * hid items from the count.
 */
import type * as grpc from '@grpc/grpc-js';
import type { DescService } from '@bufbuild/protobuf';
import { serviceDefinition } from '../../rpc/service-definition.js';
import { decodeMessage } from '../../rpc/binary-decode.js';
import { ApiError, ErrorReason, Status } from './errors.js';

export class UndecodableRequest {
  constructor(
    readonly typeName: string,
    /** Why, when it is not simply malformed. */
    readonly error?: ApiError,
  ) {}
}

/** Top-level fields a request may carry besides its repeated items (none has more than a few). */
const OTHER_FIELDS = 64;

/**
 * serviceDefinition() whose request deserializers never throw, keep no unknown fields, and refuse
 * a message with more than maxItems + OTHER_FIELDS top-level fields before decoding it.
 */
export function daemonServiceDefinition(service: DescService, maxItems: number): grpc.ServiceDefinition {
  const def = serviceDefinition(service);
  const maxFields = maxItems + OTHER_FIELDS;
  return Object.fromEntries(
    service.methods.map((method) => {
      const m = def[method.localName]!;
      const typeName = method.input.typeName;
      const nestedOperations = typeName === 'ringfence.v1.SessionRequest';
      const requestDeserialize = (b: Buffer): unknown => {
        const fields = countTopLevelFields(b, maxFields);
        // A Session message's `more` items may carry `more` of their own (refused later, per item):
        // counted at every depth, or one top-level item could hide millions of them.
        if (fields > maxFields || (nestedOperations && countSessionOperations(b, maxItems) > maxItems)) {
          return new UndecodableRequest(
            typeName,
            new ApiError(Status.RESOURCE_EXHAUSTED, ErrorReason.BATCH_TOO_LARGE, `the ${typeName} message has more than ${maxFields} fields or items; the limit is ${maxItems} items — split it`, {
              message_type: typeName,
              limit_items: String(maxItems),
            }),
          );
        }
        // The counts above hold only for bytes read as the wire format says (binary-decode.ts checks that
        // as it decodes, as wire-shape.ts does for protobuf-es).
        return decodeMessage(method.input, b) ?? new UndecodableRequest(typeName);
      };
      return [method.localName, { ...m, requestDeserialize }];
    }),
  ) as grpc.ServiceDefinition;
}

/**
 * The fields at the top level of an encoded message, counted without decoding it, stopping once
 * past `stopAfter`. Malformed input ends the count early: the decoder then says what is wrong.
 */
export function countTopLevelFields(b: Uint8Array, stopAfter: number): number {
  let at = 0;
  let n = 0;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (at >= b.length) return undefined;
      const byte = b[at++]!;
      if (shift < 49) value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    return undefined;
  };
  while (at < b.length && n <= stopAfter) {
    const tag = varint();
    if (tag === undefined) break;
    n++;
    switch (tag % 8) {
      case 0:
        if (varint() === undefined) return n;
        break;
      case 1:
        at += 8;
        break;
      case 2: {
        const length = varint();
        if (length === undefined) return n;
        at += length;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        return n; // groups (3, 4) and invalid wire types: left to the decoder
    }
  }
  return n;
}

/** SessionRequest.more, field 16: a SessionRequest in a SessionRequest. */
const SESSION_MORE_FIELD = 16;

/**
 * The operations of an encoded SessionRequest — itself and every `more` item at any depth —
 * counted without decoding it, stopping once past `stopAfter`. Malformed input ends the count
 * early: the decoder then says what is wrong.
 */
export function countSessionOperations(b: Uint8Array, stopAfter: number): number {
  let n = 1;
  // Ranges of encoded SessionRequests still to walk (an explicit stack: nesting may be deep).
  const ranges: [number, number][] = [[0, b.length]];
  while (ranges.length > 0 && n <= stopAfter) {
    const [start, end] = ranges.pop()!;
    let at = start;
    const varint = (): number | undefined => {
      let value = 0;
      for (let shift = 0; shift < 64; shift += 7) {
        if (at >= end) return undefined;
        const byte = b[at++]!;
        if (shift < 49) value += (byte & 0x7f) * 2 ** shift;
        if ((byte & 0x80) === 0) return value;
      }
      return undefined;
    };
    while (at < end && n <= stopAfter) {
      const tag = varint();
      if (tag === undefined) break;
      const wireType = tag % 8;
      if (wireType === 0) {
        if (varint() === undefined) break;
      } else if (wireType === 1) at += 8;
      else if (wireType === 5) at += 4;
      else if (wireType === 2) {
        const length = varint();
        if (length === undefined || at + length > end) break;
        if (Math.floor(tag / 8) === SESSION_MORE_FIELD) {
          n++;
          ranges.push([at, at + length]);
        }
        at += length;
      } else break; // groups and invalid wire types: left to the decoder
    }
  }
  return n;
}

export function undecodable(m: UndecodableRequest): ApiError {
  return m.error ?? new ApiError(Status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD, `the request is not a valid ${m.typeName} message (protobuf decoding failed)`, { message_type: m.typeName });
}

/** The message, or the INVALID_ARGUMENT error for one that did not decode. */
export function decoded<T>(m: T): T {
  if (m instanceof UndecodableRequest) throw undecodable(m);
  return m;
}
