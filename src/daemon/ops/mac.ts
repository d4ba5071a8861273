import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ComputeMacRequest, ComputeMacResponseSchema, VerifyMacRequest, VerifyMacResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { computeMac as kernelMac, verifyMac as kernelVerify } from '../engine/suite-ops.js';
import { invalidField } from '../api/errors.js';
import { checkSize, SIZE_HINT, requireName, type OpContext } from './context.js';
import { rechecked } from './key-recheck.js';

/** CryptoService.ComputeMac: HMAC with the primary version, in the kernel. */
export async function computeMac(ctx: OpContext, req: ComputeMacRequest): Promise<MessageInitShape<typeof ComputeMacResponseSchema>> {
  const name = requireName('key_name', req.keyName);
  ctx.authorize('mac', name);
  const data = checkSize('data', req.data, ctx.limits.maxPayloadBytes, SIZE_HINT.mac);
  const r = ctx.keys.forMac(name);
  // Checked again once the kernel answers (or fails: key-recheck.ts): a key change acknowledged meanwhile holds for this answer (helper-149).
  const mac = await rechecked(ctx, r, kernelMac(ctx.engine, r.suite, r.serials[0]!, data), () => ctx.keys.checkMacVersion(r));
  ctx.keys.checkMacVersion(r);
  return { mac, keyName: r.key.name, keyVersion: r.version };
}

/** CryptoService.VerifyMac: a wrong MAC is `valid: false`; the comparison is constant-time. */
export async function verifyMac(ctx: OpContext, req: VerifyMacRequest): Promise<MessageInitShape<typeof VerifyMacResponseSchema>> {
  const name = requireName('key_name', req.keyName);
  ctx.authorize('verify', name);
  const data = checkSize('data', req.data, ctx.limits.maxPayloadBytes, SIZE_HINT.mac);
  if (req.mac.byteLength === 0) throw invalidField('mac', 'mac is required');
  const r = ctx.keys.forVerify(name, req.keyVersion);
  // A MAC of the wrong length is simply not valid; the kernel is not asked.
  const valid = req.mac.byteLength === r.suite.macBytes && (await rechecked(ctx, r, kernelVerify(ctx.engine, r.suite, r.serials[0]!, data, Buffer.from(req.mac)), () => ctx.keys.checkMacVersion(r)));
  ctx.keys.checkMacVersion(r);
  return { valid, keyName: r.key.name, keyVersion: r.version };
}
