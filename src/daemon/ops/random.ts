import type { MessageInitShape } from '@bufbuild/protobuf';
import type { GenerateRandomRequest, GenerateRandomResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { getRandom } from '../../../native-ffi/random.js';
import { invalidField, payloadTooLarge } from '../api/errors.js';
import type { OpContext } from './context.js';

/** CryptoService.GenerateRandom: getrandom(2), no key. */
export async function generateRandom(ctx: OpContext, req: GenerateRandomRequest): Promise<MessageInitShape<typeof GenerateRandomResponseSchema>> {
  ctx.authorize('random');
  if (req.lengthBytes < 1) throw invalidField('length_bytes', `length_bytes must be 1..${ctx.limits.maxPayloadBytes}`);
  if (req.lengthBytes > ctx.limits.maxPayloadBytes) throw payloadTooLarge('length_bytes', req.lengthBytes, ctx.limits.maxPayloadBytes, 'ask for less, in several calls');
  return { data: getRandom(req.lengthBytes) };
}
