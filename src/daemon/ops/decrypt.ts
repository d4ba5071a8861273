import type { MessageInitShape } from '@bufbuild/protobuf';
import type { DecryptRequest, DecryptResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { invalidField } from '../api/errors.js';
import { checkSize, SIZE_HINT, type OpContext } from './context.js';
import { openEnvelope } from './envelope-ops.js';

/** CryptoService.Decrypt: the ciphertext names its key and version; plaintext only after the tag verified. */
export async function decrypt(ctx: OpContext, req: DecryptRequest): Promise<MessageInitShape<typeof DecryptResponseSchema>> {
  if (req.ciphertext.byteLength === 0) throw invalidField('ciphertext', 'ciphertext is required');
  const ciphertext = checkSize('ciphertext', req.ciphertext, ctx.limits.maxPayloadBytes + 1024, SIZE_HINT.decrypt);
  const aad = checkSize('associated_data', req.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
  const { plaintext, r } = await openEnvelope(ctx, ciphertext, aad, 'decrypt');
  return { plaintext, keyName: r.key.name, keyVersion: r.version };
}
