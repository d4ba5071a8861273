/**
 * Suite-level operations over the engine: how each suite lays out its IV, and the encrypt-then-MAC
 * construction for kernels that refuse gcm(aes) (af_alg_restrict).
 */
import type { AeadSuite, HashSuite, MacSuite } from '../../capabilities/suites.js';
import type { CryptoEngine, DigestInput } from './engine.js';
import { EngineError } from './errors.js';

/** Checks the arguments and resolves what every AEAD call needs. */
function prepare(suite: AeadSuite, serials: readonly number[], nonce: Buffer) {
  checkKeys(suite, serials);
  checkNonce(suite, nonce);
  const [cipher, mac] = suite.algorithms;
  return { iv: kernelIv(suite, nonce), cipher: cipher!, mac, key: serials[0]!, macKey: serials[1] };
}

function checkKeys(suite: AeadSuite | MacSuite, serials: readonly number[]): void {
  if (serials.length !== suite.keyBytes.length) {
    throw new EngineError('INVALID_ARGUMENT', `${suite.name} takes ${suite.keyBytes.length} kernel key(s), got ${serials.length}`);
  }
  // Encrypt-then-MAC needs independent keys: one key as both cipher and MAC key is refused.
  if (new Set(serials).size !== serials.length) throw new EngineError('INVALID_ARGUMENT', `${suite.name}: the same kernel key given twice`);
}

function checkNonce(suite: AeadSuite, nonce: Buffer): void {
  if (nonce.length !== suite.nonceBytes) {
    throw new EngineError('INVALID_ARGUMENT', `${suite.name} takes a ${suite.nonceBytes}-byte nonce, got ${nonce.length}`);
  }
}

/**
 * The kernel's IV for a 12-byte nonce. CCM (RFC 3610) wants 16 bytes: flags byte L-1 (L = 15 - 12 = 3,
 * so 2), the nonce, then the zeroed counter. CTR gets nonce || 32-bit block counter from 0.
 */
function kernelIv(suite: AeadSuite, nonce: Buffer): Buffer {
  switch (suite.name) {
    case 'aes-256-ccm':
      return Buffer.concat([Buffer.from([2]), nonce, Buffer.alloc(3)]);
    case 'aes-256-ctr-hmac-sha256':
      return Buffer.concat([nonce, Buffer.alloc(4)]);
    default:
      return nonce;
  }
}

/**
 * Encrypt-then-MAC tag input, after RFC 7518 5.2.2.1: AAD || nonce || ciphertext || AL, where AL is the
 * AAD length in bits as a 64-bit big-endian integer (so AAD and ciphertext cannot trade bytes).
 * The tag is the full 32-byte HMAC-SHA256.
 */
function etmMacInput(aad: Buffer, nonce: Buffer, ct: Buffer): Buffer[] {
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(aad.length) * 8n);
  return [aad, nonce, ct, al];
}

/**
 * CCM with a 12-byte nonce has a 3-byte length field: messages below 2^24 bytes (RFC 3610). The
 * kernel accepts exactly 2^24 and writes its length as 0, a ciphertext nothing else opens; the
 * limits allow 16 MiB, so it is refused here.
 */
export const CCM_MAX_BYTES = 2 ** 24 - 1;

function checkLength(suite: AeadSuite, bytes: number, sealing: boolean): void {
  if (suite.name !== 'aes-256-ccm' || bytes <= CCM_MAX_BYTES) return;
  // Earlier versions sealed exactly 2^24 bytes (the kernel opens what it made); nothing longer.
  if (!sealing) {
    if (bytes <= CCM_MAX_BYTES + 1) return;
    throw new EngineError('AUTHENTICATION_FAILED', `${suite.name}: a ciphertext of ${bytes} bytes is longer than any this suite makes`);
  }
  throw new EngineError('PAYLOAD_TOO_LARGE', `${suite.name} seals at most ${CCM_MAX_BYTES} bytes in one message (a 12-byte nonce leaves a 3-byte length); got ${bytes}`, { size: { field: 'plaintext', actualBytes: bytes, limitBytes: CCM_MAX_BYTES } });
}

/**
 * Encrypts and authenticates; returns ciphertext || tag after `headroom` bytes of scratch that the
 * caller overwrites (a chunk prefix or envelope header), which spares a copy of the sealed bytes.
 */
export async function seal(engine: CryptoEngine, suite: AeadSuite, serials: readonly number[], nonce: Buffer, aad: Buffer, plaintext: Buffer, headroom = 0): Promise<Buffer> {
  checkLength(suite, plaintext.length, true);
  const { iv, cipher, mac, key, macKey } = prepare(suite, serials, nonce);
  if (!mac) return engine.aeadEncrypt(cipher, key, suite.tagBytes, iv, aad, plaintext, headroom);
  const ct = await engine.skcipher(cipher, key, true, iv, plaintext);
  const tag = await engine.digest(mac, macKey!, suite.tagBytes, etmMacInput(aad, nonce, ct));
  return Buffer.concat([Buffer.alloc(headroom), ct, tag]);
}

/** Verifies and decrypts ciphertext || tag; EngineError AUTHENTICATION_FAILED on any mismatch. */
export async function open(engine: CryptoEngine, suite: AeadSuite, serials: readonly number[], nonce: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
  checkLength(suite, sealed.length - suite.tagBytes, false);
  const { iv, cipher, mac, key, macKey } = prepare(suite, serials, nonce);
  if (!mac) return engine.aeadDecrypt(cipher, key, suite.tagBytes, iv, aad, sealed);
  if (sealed.length < suite.tagBytes) throw new EngineError('AUTHENTICATION_FAILED', `${suite.name}: ciphertext shorter than its tag`);
  const ct = sealed.subarray(0, sealed.length - suite.tagBytes);
  const tag = sealed.subarray(sealed.length - suite.tagBytes);
  // MAC first, in constant time; the cipher never sees unauthenticated data.
  if (!(await engine.verifyDigest(mac, macKey!, suite.tagBytes, etmMacInput(aad, nonce, ct), tag))) {
    throw new EngineError('AUTHENTICATION_FAILED', `${suite.name}: authentication failed`);
  }
  return engine.skcipher(cipher, key, false, iv, ct);
}

export function computeMac(engine: CryptoEngine, suite: MacSuite, serial: number, data: DigestInput): Promise<Buffer> {
  return engine.digest(suite.algorithms[0], serial, suite.macBytes, data);
}

/** Constant-time verification of a full-length MAC. */
export function verifyMac(engine: CryptoEngine, suite: MacSuite, serial: number, data: DigestInput, mac: Buffer): Promise<boolean> {
  return engine.verifyDigest(suite.algorithms[0], serial, suite.macBytes, data, mac);
}

export function hash(engine: CryptoEngine, suite: HashSuite, data: DigestInput): Promise<Buffer> {
  return engine.digest(suite.algorithms[0], undefined, suite.digestBytes, data);
}
