/**
 * Rich error details on the wire: google.rpc.Status with a google.rpc.ErrorInfo in the
 * `grpc-status-details-bin` trailer (https://google.aip.dev/193). The daemon writes them; the SDK
 * reads them back into typed errors. Reasons are ErrorReason names without the prefix
 * ("KEY_NOT_FOUND"); the domain is ERROR_DOMAIN.
 */
import type * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { anyPack, anyUnpack } from '@bufbuild/protobuf/wkt';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../gen/google/rpc/status_pb.js';
import { ErrorReason } from '../gen/ringfence/v1/errors_pb.js';

export const ERROR_DOMAIN = 'ringfence.dev';
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

export interface ErrorDetails {
  reason: ErrorReason;
  metadata: Record<string, string>;
}

/** "KEY_NOT_FOUND" for ErrorReason.KEY_NOT_FOUND. */
export function reasonName(reason: ErrorReason): string {
  return ErrorReason[reason] ?? 'UNSPECIFIED';
}

export function reasonFromName(name: string): ErrorReason {
  const value = (ErrorReason as unknown as Record<string, number | undefined>)[name];
  return typeof value === 'number' ? (value as ErrorReason) : ErrorReason.UNSPECIFIED;
}

export function encodeStatusDetails(code: grpc.status, message: string, details: ErrorDetails): Buffer {
  const info = create(ErrorInfoSchema, { reason: reasonName(details.reason), domain: ERROR_DOMAIN, metadata: details.metadata });
  return Buffer.from(toBinary(StatusSchema, create(StatusSchema, { code, message, details: [anyPack(ErrorInfoSchema, info)] })));
}

/** The ErrorInfo of a failed call's trailers, if the daemon sent one; never throws. */
export function decodeStatusDetails(metadata: grpc.Metadata | undefined): ErrorDetails | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(raw)) return undefined;
  try {
    const status = fromBinary(StatusSchema, raw);
    for (const any of status.details) {
      const info = anyUnpack(any, ErrorInfoSchema);
      if (info && info.domain === ERROR_DOMAIN) return { reason: reasonFromName(info.reason), metadata: { ...info.metadata } };
    }
  } catch {
    // Not ours or corrupt: the status code and message still stand.
  }
  return undefined;
}
