import type { MessageInitShape } from '@bufbuild/protobuf';
import type { GenerateRandomRequest, GenerateRandomResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { getRandom, getRandomAsync } from '../../../native-ffi/random.js';
import { invalidField, payloadTooLarge } from '../api/errors.js';
import { DEFAULT_ENGINE_OPTIONS } from '../engine/engine.js';
import type { OpContext } from './context.js';

/**
 * Up to this many bytes getrandom runs synchronously (well under 0.1 ms); more go to the libuv
 * pool so the event loop keeps turning. The engine's AF_ALG threshold, for the same reason: below
 * it the pool's round trip (40-60 us) costs more than the work.
 */
export const RANDOM_ASYNC_THRESHOLD_BYTES = DEFAULT_ENGINE_OPTIONS.asyncThresholdBytes;

/**
 * CryptoService.GenerateRandom: getrandom(2), no key. A large request waits its caller's turn at the
 * libuv pool (the engine view's owner: the caller's uid key).
 */
export async function generateRandom(ctx: OpContext, req: GenerateRandomRequest): Promise<MessageInitShape<typeof GenerateRandomResponseSchema>> {
  ctx.authorize('random');
  if (req.lengthBytes < 1) throw invalidField('length_bytes', `length_bytes must be 1..${ctx.limits.maxPayloadBytes}`);
  if (req.lengthBytes > ctx.limits.maxPayloadBytes) throw payloadTooLarge('length_bytes', req.lengthBytes, ctx.limits.maxPayloadBytes, 'ask for less, in several calls');
  return { data: req.lengthBytes <= RANDOM_ASYNC_THRESHOLD_BYTES ? getRandom(req.lengthBytes) : await getRandomAsync(req.lengthBytes, ctx.engine.owner) };
}
