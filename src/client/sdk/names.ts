/**
 * The names the CLI and docs use for the API's enums ('aes-256-gcm', 'sha3-256', 'aead', ...), so
 * SDK callers can pass either the generated enum or its name, and print names back.
 */
import { KeyPurpose, KeyView } from '../../gen/ringfence/v1/key_pb.js';
import { HashAlgorithm, Suite } from '../../gen/ringfence/v1/suite_pb.js';

export type SuiteName =
  | 'aes-256-gcm'
  | 'chacha20-poly1305'
  | 'aes-256-ccm'
  | 'aes-256-ctr-hmac-sha256'
  | 'hmac-sha256'
  | 'hmac-sha384'
  | 'hmac-sha512';
export type HashAlgorithmName = 'sha256' | 'sha384' | 'sha512' | 'sha3-256' | 'sha3-512' | 'blake2b-256' | 'blake2b-512';
export type KeyPurposeName = 'aead' | 'mac';
export type KeyViewName = 'basic' | 'full';

const SUITES: Record<SuiteName, Suite> = {
  'aes-256-gcm': Suite.AES_256_GCM,
  'chacha20-poly1305': Suite.CHACHA20_POLY1305,
  'aes-256-ccm': Suite.AES_256_CCM,
  'aes-256-ctr-hmac-sha256': Suite.AES_256_CTR_HMAC_SHA256,
  'hmac-sha256': Suite.HMAC_SHA256,
  'hmac-sha384': Suite.HMAC_SHA384,
  'hmac-sha512': Suite.HMAC_SHA512,
};
const HASHES: Record<HashAlgorithmName, HashAlgorithm> = {
  sha256: HashAlgorithm.SHA256,
  sha384: HashAlgorithm.SHA384,
  sha512: HashAlgorithm.SHA512,
  'sha3-256': HashAlgorithm.SHA3_256,
  'sha3-512': HashAlgorithm.SHA3_512,
  'blake2b-256': HashAlgorithm.BLAKE2B_256,
  'blake2b-512': HashAlgorithm.BLAKE2B_512,
};
const PURPOSES: Record<KeyPurposeName, KeyPurpose> = { aead: KeyPurpose.AEAD, mac: KeyPurpose.MAC };
const VIEWS: Record<KeyViewName, KeyView> = { basic: KeyView.BASIC, full: KeyView.FULL };

export const SUITE_NAMES = Object.keys(SUITES) as SuiteName[];
export const HASH_ALGORITHM_NAMES = Object.keys(HASHES) as HashAlgorithmName[];

function parse<E extends number>(what: string, table: Record<string, E>, value: E | string): E {
  if (typeof value === 'number') {
    // Any int32 goes (a newer daemon may know more values); anything else cannot be encoded.
    if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31) throw new RangeError(`${what} must be a name or an enum value, got ${value}`);
    return value;
  }
  const key = value.toLowerCase();
  const found = Object.hasOwn(table, key) ? table[key] : undefined;
  if (found === undefined) throw new RangeError(`unknown ${what} "${value}" (expected one of: ${Object.keys(table).join(', ')})`);
  return found;
}

function nameOf<E extends number>(table: Record<string, E>, value: E): string | undefined {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return undefined;
}

/** Suite.AES_256_GCM or 'aes-256-gcm' -> Suite.AES_256_GCM; throws on unknown names. */
export function parseSuite(suite: Suite | SuiteName | string): Suite {
  return parse('suite', SUITES as Record<string, Suite>, suite);
}
export function parseHashAlgorithm(algorithm: HashAlgorithm | HashAlgorithmName | string): HashAlgorithm {
  return parse('hash algorithm', HASHES as Record<string, HashAlgorithm>, algorithm);
}
export function parseKeyPurpose(purpose: KeyPurpose | KeyPurposeName | string): KeyPurpose {
  return parse('key purpose', PURPOSES as Record<string, KeyPurpose>, purpose);
}
export function parseKeyView(view: KeyView | KeyViewName | string): KeyView {
  return parse('key view', VIEWS as Record<string, KeyView>, view);
}

/** 'aes-256-gcm' for Suite.AES_256_GCM; undefined for UNSPECIFIED and values this SDK predates. */
export function suiteName(suite: Suite): SuiteName | undefined {
  return nameOf(SUITES, suite) as SuiteName | undefined;
}
export function hashAlgorithmName(algorithm: HashAlgorithm): HashAlgorithmName | undefined {
  return nameOf(HASHES, algorithm) as HashAlgorithmName | undefined;
}
export function keyPurposeName(purpose: KeyPurpose): KeyPurposeName | undefined {
  return nameOf(PURPOSES, purpose) as KeyPurposeName | undefined;
}
