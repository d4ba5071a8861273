/**
 * Ergonomic arguments -> request init objects for the cryptographic operations, shared by the
 * unary methods of RingfenceClient and the pipelined RingfenceSession so both accept the same.
 */
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf';
import type {
  ComputeMacRequestSchema,
  DecryptRequestSchema,
  EncryptRequestSchema,
  GenerateDataKeyRequestSchema,
  GenerateRandomRequestSchema,
  HashRequestSchema,
  ReEncryptRequestSchema,
  VerifyMacRequestSchema,
} from '../../gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import { ciphertextFromText } from './ciphertext-text.js';
import { RingfenceError } from './errors.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import * as grpc from '@grpc/grpc-js';
import { types } from 'node:util';
import { parseHashAlgorithm, type HashAlgorithmName } from './names.js';

/** Bytes, or a string taken as UTF-8. */
export type Data = Uint8Array | string;
/** Binary ciphertext, or its text form "ringfence:v1:..." (parsed strictly). */
export type CiphertextInput = Uint8Array | string;
export type HashAlgorithmInput = HashAlgorithm | HashAlgorithmName;

/**
 * Bytes as protobuf-es takes them, else a TypeError before any call: protobuf-es took undefined and
 * null as empty bytes, so `encrypt(key, record.missingField)` from JavaScript resolved with the
 * ciphertext of nothing (and hash / computeMac with the digest of nothing), and an ArrayBuffer failed
 * as INTERNAL (review by helper-178). Bytes made in another realm (a vm context, Jest's environment)
 * are bytes too: protobuf-es refuses them ("invalid bytes: object"), so they get a view of this
 * realm over the same memory (review by helper-187).
 */
export function bytesOf(value: unknown, what: string, orElse = ''): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (types.isUint8Array(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`${what} must be a Uint8Array (or Buffer)${orElse}, got ${Object.prototype.toString.call(value)}`);
}

/**
 * A name (of a key, or a page token), else a TypeError before any call: protobuf-es wrote a number
 * or an object as its String(), so the Key that createKey answers, passed where its name goes, was
 * looked up as "[object Object]".
 */
export function nameOf(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  throw new TypeError(`${what} must be a string, got ${Object.prototype.toString.call(value)}`);
}

export const optionalName = (value: unknown, what: string) => (value === undefined ? undefined : nameOf(value, what));

/** protobuf-es took any truthy value as true: `deletionProtection: 'false'` turned protection on. */
export function flagOf(value: unknown, what: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new TypeError(`${what} must be true or false, got ${Object.prototype.toString.call(value)}`);
}

/** A batch's items: an array of objects, else a TypeError before any call. */
export function itemsOf<T extends object>(items: readonly T[], method: string): readonly T[] {
  if (!Array.isArray(items)) throw new TypeError(`${method} takes an array of items, got ${Object.prototype.toString.call(items)}`);
  // A for loop, not forEach: the holes of a sparse array are items too.
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i];
    if (item === null || typeof item !== 'object') throw new TypeError(`${method} item ${i} must be an object, got ${Object.prototype.toString.call(item)}`);
  }
  return items;
}

export function toBytes(data: Data): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : bytesOf(data, 'data', ' or a string');
}

/** The bytes of a ciphertext; a malformed text form is the caller's error (INVALID_ARGUMENT), found before any call. */
export function toCiphertext(ciphertext: CiphertextInput): Uint8Array {
  if (typeof ciphertext !== 'string') {
    return bytesOf(ciphertext, 'a ciphertext', ' or its text form');
  }
  try {
    return ciphertextFromText(ciphertext);
  } catch (err) {
    throw new RingfenceError({ code: grpc.status.INVALID_ARGUMENT, reason: ErrorReason.CIPHERTEXT_MALFORMED, message: (err as Error).message, metadata: { detail: 'text form' } });
  }
}

/**
 * A uint32 request field, checked before the call: protobuf-es would fail to serialize anything
 * else, which reached the caller as an INTERNAL error. A RangeError, as for the SDK's other options.
 */
export function uint32(field: string, n: number | undefined): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${field} must be an integer from 0 to 4294967295, got ${n}`);
  return n;
}

const optionalBytes = (data: Data | undefined) => (data === undefined ? undefined : toBytes(data));

export interface EncryptOptions {
  /** Authenticated, not encrypted nor stored: decrypt needs the same bytes. */
  associatedData?: Data;
}
export interface DecryptOptions {
  associatedData?: Data;
}
export interface ReEncryptOptions {
  /** The associated data the ciphertext was made with. */
  associatedData?: Data;
  /** Encrypt under this key instead of the ciphertext's own (its primary version either way). */
  destinationKeyName?: string;
  /** Associated data for the new ciphertext; unset: the same as associatedData. */
  destinationAssociatedData?: Data;
}
export interface GenerateDataKeyOptions {
  /** 1 to 1024; default 32. */
  lengthBytes?: number;
  associatedData?: Data;
  /** Return only the encrypted data key. */
  omitPlaintext?: boolean;
}
export interface VerifyMacOptions {
  /** The key version to verify with; default the primary. */
  keyVersion?: number;
}

type Init<S extends DescMessage> = MessageInitShape<S>;

export function encryptRequest(keyName: string, plaintext: Data, o: EncryptOptions = {}): Init<typeof EncryptRequestSchema> {
  return { keyName: nameOf(keyName, 'the key name'), plaintext: toBytes(plaintext), associatedData: optionalBytes(o.associatedData) };
}

export function decryptRequest(ciphertext: CiphertextInput, o: DecryptOptions = {}): Init<typeof DecryptRequestSchema> {
  return { ciphertext: toCiphertext(ciphertext), associatedData: optionalBytes(o.associatedData) };
}

export function reEncryptRequest(ciphertext: CiphertextInput, o: ReEncryptOptions = {}): Init<typeof ReEncryptRequestSchema> {
  return {
    ciphertext: toCiphertext(ciphertext),
    associatedData: optionalBytes(o.associatedData),
    destinationKeyName: optionalName(o.destinationKeyName, 'destinationKeyName'),
    destinationAssociatedData: optionalBytes(o.destinationAssociatedData),
  };
}

export function generateDataKeyRequest(keyName: string, o: GenerateDataKeyOptions = {}): Init<typeof GenerateDataKeyRequestSchema> {
  return {
    keyName: nameOf(keyName, 'the key name'),
    lengthBytes: uint32('lengthBytes', o.lengthBytes),
    associatedData: optionalBytes(o.associatedData),
    omitPlaintext: flagOf(o.omitPlaintext, 'omitPlaintext'),
  };
}

export function computeMacRequest(keyName: string, data: Data): Init<typeof ComputeMacRequestSchema> {
  return { keyName: nameOf(keyName, 'the key name'), data: toBytes(data) };
}

export function verifyMacRequest(keyName: string, data: Data, mac: Uint8Array, o: VerifyMacOptions = {}): Init<typeof VerifyMacRequestSchema> {
  // bytesOf: undefined was sent as an empty MAC.
  return { keyName: nameOf(keyName, 'the key name'), data: toBytes(data), mac: bytesOf(mac, 'the MAC'), keyVersion: uint32('keyVersion', o.keyVersion) };
}

export function hashRequest(data: Data, algorithm: HashAlgorithmInput = HashAlgorithm.SHA256): Init<typeof HashRequestSchema> {
  return { algorithm: parseHashAlgorithm(algorithm), data: toBytes(data) };
}

export function generateRandomRequest(lengthBytes: number): Init<typeof GenerateRandomRequestSchema> {
  return { lengthBytes: uint32('lengthBytes', lengthBytes) };
}
