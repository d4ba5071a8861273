import type { MessageInitShape } from '@bufbuild/protobuf';
import type { EncryptRequest, EncryptResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { checkSize, SIZE_HINT, requireName, type OpContext } from './context.js';
import { sealEnvelope } from './envelope-ops.js';

/** CryptoService.Encrypt: the key's primary version seals; one encryption is counted first. */
export async function encrypt(ctx: OpContext, req: EncryptRequest): Promise<MessageInitShape<typeof EncryptResponseSchema>> {
  const name = requireName('key_name', req.keyName);
  const plaintext = checkSize('plaintext', req.plaintext, ctx.limits.maxPayloadBytes, SIZE_HINT.encrypt);
  const aad = checkSize('associated_data', req.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
  ctx.authorize('encrypt', name);
  const r = await ctx.keys.forEncrypt(name);
  return { ciphertext: await sealEnvelope(ctx, r, plaintext, aad), keyName: r.key.name, keyVersion: r.version };
}
