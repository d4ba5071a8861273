import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ReEncryptRequest, ReEncryptResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { aboutKey, invalidField } from '../api/errors.js';
import { auditText } from '../api/audit.js';
import { checkSize, SIZE_HINT, requireName, type OpContext } from './context.js';
import { openEnvelope, sealEnvelope } from './envelope-ops.js';

/** CryptoService.ReEncrypt: open, then seal under the destination's primary version; the plaintext never leaves. */
export async function reEncrypt(ctx: OpContext, req: ReEncryptRequest): Promise<MessageInitShape<typeof ReEncryptResponseSchema>> {
  if (req.ciphertext.byteLength === 0) throw invalidField('ciphertext', 'ciphertext is required');
  const ciphertext = checkSize('ciphertext', req.ciphertext, ctx.limits.maxPayloadBytes + 1024, SIZE_HINT.decrypt);
  const aad = checkSize('associated_data', req.associatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
  const newAad = req.destinationAssociatedData === undefined ? aad : checkSize('destination_associated_data', req.destinationAssociatedData, ctx.limits.maxAssociatedDataBytes, SIZE_HINT.aad);
  // Both keys are checked before anything is decrypted (the source inside openEnvelope). Moving a
  // ciphertext to another key also needs decrypt on its source: with reencrypt on two keys and
  // decrypt on only one, it would otherwise be a way to read the other's ciphertexts.
  if (req.destinationKeyName) {
    let destination: string;
    try {
      destination = requireName('destination_key_name', req.destinationKeyName);
    } catch (err) {
      // The audit line names it as a refused Encrypt's names its key (review by helper-147).
      throw aboutKey(err, auditText(req.destinationKeyName));
    }
    ctx.authorize('reencrypt', destination);
  }
  const { plaintext, r: source } = await openEnvelope(ctx, ciphertext, aad, 'reencrypt', (sourceName) => {
    if (req.destinationKeyName && req.destinationKeyName !== sourceName) ctx.authorize('decrypt', sourceName);
  });
  const destName = req.destinationKeyName || source.key.name;
  try {
    const dest = await ctx.keys.forEncrypt(destName);
    const sealed = await sealEnvelope(ctx, dest, plaintext, newAad);
    // The source too, once the destination's seal answered: a source disabled, scheduled for
    // deletion or given a higher min_decryption_version meanwhile refuses this, as Decrypt's answer.
    try {
      ctx.keys.forDecrypt(Buffer.from(source.key.id, 'hex'), source.version, source.suite.name);
    } catch (err) {
      throw aboutKey(err, source.key.name, source.version);
    }
    return {
      ciphertext: sealed,
      keyName: dest.key.name,
      keyVersion: dest.version,
      sourceKeyName: source.key.name,
      sourceKeyVersion: source.version,
    };
  } catch (err) {
    throw aboutKey(err, destName);
  } finally {
    plaintext.fill(0);
  }
}
