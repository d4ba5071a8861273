/** What a client is answered when an operation fails, for tests of the daemon's error paths. */
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, toApiError } from './errors.js';

/** The status a client would read for `p`'s outcome (the handler converts with toApiError too). */
export const answer = (p: Promise<unknown>) =>
  p.then(
    () => ({ answered: true }),
    (err: unknown) => {
      const e = toApiError(err);
      return { code: grpc.status[e.code], reason: ErrorReason[e.reason], metadata: e.metadata, message: e.message };
    },
  );

/** The errnos with which the kernel refuses a key it still holds (KERNEL_KEY_REFUSALS), by name and number. */
export const KERNEL_KEY_REFUSAL_ERRNOS: [string, number][] = [
  ['ENOKEY', 126],
  ['EKEYREVOKED', 128],
  ['EKEYEXPIRED', 127],
  ['EACCES', 13],
];
