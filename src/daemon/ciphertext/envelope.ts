/**
 * The ciphertext envelope: self-describing and versioned, so Decrypt needs no key argument and
 * rotation keeps old ciphertexts readable.
 *
 * Binary layout (all integers big-endian):
 *   "RF" | format u8 (=1) | suite u8 | key id (16 bytes) | key version u32 | nonce (12 bytes) | sealed
 * where `sealed` is the suite's ciphertext || tag. The header (everything before `sealed`) is
 * authenticated: the AEAD's associated data is header || caller's associated data. The header has a
 * fixed length, so the concatenation is unambiguous.
 *
 * The daemon speaks binary only; the text form ("ringfence:v1:" + base64url) is the SDK's
 * (src/client/sdk/ciphertext-text.ts).
 */
import type { AeadSuiteName } from '../../capabilities/suites.js';

export const FORMAT_VERSION = 1;
const MAGIC = Buffer.from('RF');
export const KEY_ID_BYTES = 16;
export const NONCE_BYTES = 12;
export const HEADER_BYTES = MAGIC.length + 1 + 1 + KEY_ID_BYTES + 4 + NONCE_BYTES; // 36

/** Wire ids of the suites, shared with the stream format (stream-format.ts); never reuse a number. */
export const SUITE_IDS: Readonly<Record<AeadSuiteName, number>> = {
  'aes-256-gcm': 1,
  'chacha20-poly1305': 2,
  'aes-256-ccm': 3,
  'aes-256-ctr-hmac-sha256': 4,
};
export const SUITE_BY_ID: ReadonlyMap<number, AeadSuiteName> = new Map(Object.entries(SUITE_IDS).map(([name, id]) => [id, name as AeadSuiteName]));

export interface EnvelopeHeader {
  suite: AeadSuiteName;
  keyId: Buffer;
  keyVersion: number;
  nonce: Buffer;
}

export interface Envelope extends EnvelopeHeader {
  /** The exact header bytes, to authenticate as associated data. */
  header: Buffer;
  sealed: Buffer;
}

/** Why a ciphertext was refused; never echoes its bytes. */
export class MalformedCiphertextError extends Error {
  constructor(reason: string) {
    super(`malformed ciphertext: ${reason}`);
    this.name = 'MalformedCiphertextError';
  }
}

export function encodeHeader(h: EnvelopeHeader): Buffer {
  return encodeHeaderInto(h, Buffer.alloc(HEADER_BYTES));
}

function encodeHeaderInto(h: EnvelopeHeader, out: Buffer): Buffer {
  if (h.keyId.length !== KEY_ID_BYTES) throw new RangeError(`key id must be ${KEY_ID_BYTES} bytes`);
  if (h.nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  if (!Number.isInteger(h.keyVersion) || h.keyVersion < 1 || h.keyVersion > 0xffffffff) throw new RangeError('key version out of range');
  MAGIC.copy(out, 0);
  out[2] = FORMAT_VERSION;
  out[3] = SUITE_IDS[h.suite];
  h.keyId.copy(out, 4);
  out.writeUInt32BE(h.keyVersion, 4 + KEY_ID_BYTES);
  h.nonce.copy(out, 8 + KEY_ID_BYTES);
  return out;
}

/** The associated data the AEAD authenticates: header || caller's AAD. */
export function associatedData(header: Buffer, callerAad: Buffer): Buffer {
  return Buffer.concat([header, callerAad]);
}

/**
 * A new ciphertext's header and associated data, encoded once into one buffer: `aad` is
 * header || caller's AAD, and `header` a view of its first HEADER_BYTES.
 */
export function headerWithAssociatedData(h: EnvelopeHeader, callerAad: Buffer): { header: Buffer; aad: Buffer } {
  const aad = Buffer.allocUnsafe(HEADER_BYTES + callerAad.length);
  encodeHeaderInto(h, aad);
  callerAad.copy(aad, HEADER_BYTES);
  return { header: aad.subarray(0, HEADER_BYTES), aad };
}

export function encodeEnvelope(header: Buffer, sealed: Buffer): Buffer {
  return Buffer.concat([header, sealed]);
}

/** Parses hostile input strictly: every field is checked before use. */
export function decodeEnvelope(data: Buffer, minSealedBytes = 16): Envelope {
  if (data.length < HEADER_BYTES) throw new MalformedCiphertextError(`${data.length} bytes is shorter than the ${HEADER_BYTES}-byte header`);
  if (!data.subarray(0, 2).equals(MAGIC)) throw new MalformedCiphertextError('not a ringfence ciphertext (bad magic)');
  if (data[2] !== FORMAT_VERSION) throw new MalformedCiphertextError(`unsupported format version ${data[2]}`);
  const suite = SUITE_BY_ID.get(data[3]!);
  if (!suite) throw new MalformedCiphertextError(`unknown suite id ${data[3]}`);
  const keyVersion = data.readUInt32BE(4 + KEY_ID_BYTES);
  if (keyVersion === 0) throw new MalformedCiphertextError('key version 0');
  const sealed = data.subarray(HEADER_BYTES);
  if (sealed.length < minSealedBytes) throw new MalformedCiphertextError('truncated: shorter than the authentication tag');
  return {
    suite,
    keyId: Buffer.from(data.subarray(4, 4 + KEY_ID_BYTES)),
    keyVersion,
    nonce: Buffer.from(data.subarray(8 + KEY_ID_BYTES, HEADER_BYTES)),
    header: Buffer.from(data.subarray(0, HEADER_BYTES)),
    sealed,
  };
}

