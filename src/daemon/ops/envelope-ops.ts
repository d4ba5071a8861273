/**
 * Sealing and opening the unary ciphertext envelope (src/daemon/ciphertext/envelope.ts) with a key
 * version: shared by Encrypt, Decrypt, ReEncrypt and GenerateDataKey.
 */
import { getRandom } from '../../../native-ffi/random.js';
import { associatedData, decodeEnvelope, FORMAT_VERSION, HEADER_BYTES, headerWithAssociatedData } from '../ciphertext/envelope.js';
import { STREAM_FORMAT_VERSION } from '../ciphertext/stream-format.js';
import { open, seal } from '../engine/suite-ops.js';
import { aboutKey, ApiError, deniedByCiphertext, ErrorReason, Status } from '../api/errors.js';
import type { AeadSuite } from '../../capabilities/suites.js';
import type { ResolvedVersion } from '../keys/key-manager.js';
import type { OpContext } from './context.js';
import { rechecked } from './key-recheck.js';

/** Key ids as bytes, decoded from hex once per key record (a key keeps its id for life). */
const keyIds = new WeakMap<object, Buffer>();
function keyIdBytes(key: { id: string }): Buffer {
  let id = keyIds.get(key);
  if (!id) keyIds.set(key, (id = Buffer.from(key.id, 'hex')));
  return id;
}

export async function sealEnvelope(ctx: OpContext, r: ResolvedVersion<AeadSuite>, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
  // A getrandom per nonce, never a pool: the kernel reseeds when a VM snapshot is cloned (vmgenid),
  // randomness buffered here would be handed out again in both clones, i.e. nonces reused.
  const nonce = getRandom(r.suite.nonceBytes);
  const { header, aad: headerAndAad } = headerWithAssociatedData({ suite: r.suite.name, keyId: keyIdBytes(r.key), keyVersion: r.version, nonce }, aad);
  // The header goes into the seal's headroom: the envelope is header || sealed without another copy.
  // Checked again once the kernel answers (a large seal waits on the pool): a key change
  // acknowledged meanwhile must hold for this answer too (review by helper-149), and for its
  // failure (a key deleted meanwhile: key-recheck.ts).
  const recheck = () => ctx.keys.checkStreamVersion(r, 0, 'request');
  const envelope = await rechecked(ctx, r, seal(ctx.engine, r.suite, r.serials, nonce, headerAndAad, plaintext, HEADER_BYTES), recheck);
  recheck();
  header.copy(envelope, 0);
  return envelope;
}

/** Opens a client's ciphertext: format, key, version and suite are all checked before the kernel sees it. */
export async function openEnvelope(
  ctx: OpContext,
  ciphertext: Buffer,
  aad: Buffer,
  op: 'decrypt' | 'reencrypt',
  /** Further checks on the source key's name, also before anything is decrypted. */
  alsoAuthorize: (sourceName: string) => void = () => {},
): Promise<{ plaintext: Buffer; r: ResolvedVersion<AeadSuite> }> {
  if (ciphertext.length >= 3 && ciphertext[0] === 0x52 && ciphertext[1] === 0x46 && ciphertext[2] !== FORMAT_VERSION) {
    const format = ciphertext[2]!;
    // A newer daemon's format is unsupported; a stream ciphertext (or format 0) is the wrong kind here.
    if (format > STREAM_FORMAT_VERSION) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_FORMAT_UNSUPPORTED, `ciphertext format ${format} is newer than this daemon knows (Decrypt reads format ${FORMAT_VERSION}); decrypt it with the daemon that made it, or upgrade`, { format_version: String(format) });
    }
    const detail = format === STREAM_FORMAT_VERSION ? 'this is a stream ciphertext; decrypt it with DecryptStream' : `there is no ciphertext format ${format}`;
    throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, `not a Decrypt ciphertext: ${detail}`, { detail });
  }
  const env = decodeEnvelope(ciphertext);
  // Checked before the key's state, so a caller without access learns nothing about the key.
  const name = ctx.keys.nameOfId(env.keyId);
  if (name !== undefined) {
    try {
      ctx.authorize(op, name);
      alsoAuthorize(name);
    } catch (err) {
      throw aboutKey(deniedByCiphertext(err, env.keyId, name), name, env.keyVersion);
    }
  }
  try {
    const r = ctx.keys.forDecrypt(env.keyId, env.keyVersion, env.suite);
    if (env.sealed.length < r.suite.tagBytes) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, `the ciphertext is shorter than its ${HEADER_BYTES}-byte header and ${r.suite.tagBytes}-byte tag`, { detail: 'shorter than header and tag' });
    }
    const plaintext = await rechecked(ctx, r, open(ctx.engine, r.suite, r.serials, env.nonce, associatedData(env.header, aad), env.sealed), () => ctx.keys.forDecrypt(env.keyId, env.keyVersion, env.suite));
    // As for a seal: a key disabled (or its version retired) while the kernel opened this answers
    // as it would have after.
    try {
      ctx.keys.forDecrypt(env.keyId, env.keyVersion, env.suite);
    } catch (err) {
      plaintext.fill(0);
      throw err;
    }
    return { plaintext, r };
  } catch (err) {
    throw name === undefined ? err : aboutKey(err, name, env.keyVersion);
  }
}
