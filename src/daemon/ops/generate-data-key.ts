import type { MessageInitShape } from '@bufbuild/protobuf';
import type { GenerateDataKeyRequest, GenerateDataKeyResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { getRandom } from '../../../native-ffi/random.js';
import { payloadTooLarge } from '../api/errors.js';
import { checkSize, SIZE_HINT, requireName, type OpContext } from './context.js';
import { sealEnvelope } from './envelope-ops.js';

export const MAX_DATA_KEY_BYTES = 1024;

/** CryptoService.GenerateDataKey: getrandom bytes, sealed under the key; the plaintext copy only if asked. */
export async function generateDataKey(ctx: OpContext, req: GenerateDataKeyRequest): Promise<MessageInitShape<typeof GenerateDataKeyResponseSchema>> {
  const name = requireName('key_name', req.keyName);
  ctx.authorize('datakey', name);
  const length = req.lengthBytes || 32;
  if (length > MAX_DATA_KEY_BYTES) throw payloadTooLarge('length_bytes', length, MAX_DATA_KEY_BYTES, 'a data key is at most 1024 bytes; 0 asks for 32');
  const aad = checkSize('associated_data', req.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
  const r = await ctx.keys.forEncrypt(name);
  const dataKey = getRandom(length);
  const ciphertext = await sealEnvelope(ctx, r, dataKey, aad).catch((err: unknown) => {
    dataKey.fill(0);
    throw err;
  });
  if (req.omitPlaintext) dataKey.fill(0);
  return { ciphertext, plaintext: req.omitPlaintext ? new Uint8Array(0) : dataKey, keyName: r.key.name, keyVersion: r.version };
}
