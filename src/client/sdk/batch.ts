/** Unpacking batch responses: each item is its response or the error it failed with. */
import type { ItemStatus } from '../../gen/ringfence/v1/errors_pb.js';
import { RingfenceError, itemStatusError } from './errors.js';
import * as grpc from '@grpc/grpc-js';

type BatchResult<T> = { result: { case: 'response'; value: T } | { case: 'error'; value: ItemStatus } | { case: undefined; value?: undefined } };

/**
 * `[response | RingfenceError, ...]` in the order of the request's items, e.g.
 * `batchResults(await client.batchEncrypt(items))`; check with `instanceof RingfenceError`.
 */
export function batchResults<T>(response: { results: BatchResult<T>[] }): (T | RingfenceError)[] {
  return response.results.map(({ result }) => {
    if (result.case === 'response') return result.value;
    if (result.case === 'error') return itemStatusError(result.value);
    return new RingfenceError({ code: grpc.status.INTERNAL, message: 'the daemon sent a batch result with neither response nor error' });
  });
}
