/**
 * The suites ringfence offers and the kernel algorithms each needs. Shared by the daemon, the
 * capability probe and the CLI, so names are validated the same way everywhere.
 */
import type { AlgType } from '../../native-ffi/af-alg.js';

export interface KernelAlg {
  type: AlgType;
  name: string;
}

export type AeadSuiteName = 'aes-256-gcm' | 'chacha20-poly1305' | 'aes-256-ccm' | 'aes-256-ctr-hmac-sha256';
export type MacSuiteName = 'hmac-sha256' | 'hmac-sha384' | 'hmac-sha512';
export type HashName = 'sha256' | 'sha384' | 'sha512' | 'sha3-256' | 'sha3-512' | 'blake2b-256' | 'blake2b-512';

export interface AeadSuite {
  kind: 'aead';
  name: AeadSuiteName;
  /** One kernel key per entry: the encryption key, then (encrypt-then-MAC only) the MAC key. */
  keyBytes: readonly number[];
  algorithms: readonly KernelAlg[];
  nonceBytes: 12;
  tagBytes: number;
  /**
   * Encryptions per key version with random 96-bit nonces before the collision probability passes
   * 2^-32 (NIST SP 800-38D 8.3); the daemon rotates before this.
   */
  invocationLimit: number;
}

export interface MacSuite {
  kind: 'mac';
  name: MacSuiteName;
  keyBytes: readonly [number];
  algorithms: readonly [KernelAlg];
  macBytes: number;
}

export interface HashSuite {
  kind: 'hash';
  name: HashName;
  algorithms: readonly [KernelAlg];
  digestBytes: number;
}

const RANDOM_NONCE_LIMIT = 2 ** 32;

/** In order of preference: the first one the kernel allows is the default for new AEAD keys. */
export const AEAD_SUITES: readonly AeadSuite[] = [
  { kind: 'aead', name: 'aes-256-gcm', keyBytes: [32], algorithms: [{ type: 'aead', name: 'gcm(aes)' }], nonceBytes: 12, tagBytes: 16, invocationLimit: RANDOM_NONCE_LIMIT },
  { kind: 'aead', name: 'chacha20-poly1305', keyBytes: [32], algorithms: [{ type: 'aead', name: 'rfc7539(chacha20,poly1305)' }], nonceBytes: 12, tagBytes: 16, invocationLimit: RANDOM_NONCE_LIMIT },
  { kind: 'aead', name: 'aes-256-ccm', keyBytes: [32], algorithms: [{ type: 'aead', name: 'ccm(aes)' }], nonceBytes: 12, tagBytes: 16, invocationLimit: RANDOM_NONCE_LIMIT },
  {
    kind: 'aead',
    name: 'aes-256-ctr-hmac-sha256',
    keyBytes: [32, 32],
    algorithms: [{ type: 'skcipher', name: 'ctr(aes)' }, { type: 'hash', name: 'hmac(sha256)' }],
    nonceBytes: 12,
    tagBytes: 32,
    invocationLimit: RANDOM_NONCE_LIMIT,
  },
];

export const MAC_SUITES: readonly MacSuite[] = [
  { kind: 'mac', name: 'hmac-sha256', keyBytes: [32], algorithms: [{ type: 'hash', name: 'hmac(sha256)' }], macBytes: 32 },
  { kind: 'mac', name: 'hmac-sha384', keyBytes: [48], algorithms: [{ type: 'hash', name: 'hmac(sha384)' }], macBytes: 48 },
  { kind: 'mac', name: 'hmac-sha512', keyBytes: [64], algorithms: [{ type: 'hash', name: 'hmac(sha512)' }], macBytes: 64 },
];

export const HASH_SUITES: readonly HashSuite[] = (
  [
    ['sha256', 32],
    ['sha384', 48],
    ['sha512', 64],
    ['sha3-256', 32],
    ['sha3-512', 64],
    ['blake2b-256', 32],
    ['blake2b-512', 64],
  ] as const
).map(([name, digestBytes]) => ({ kind: 'hash', name, algorithms: [{ type: 'hash', name }], digestBytes }));

export type Suite = AeadSuite | MacSuite | HashSuite;
export const ALL_SUITES: readonly Suite[] = [...AEAD_SUITES, ...MAC_SUITES, ...HASH_SUITES];

export function aeadSuite(name: string): AeadSuite | undefined {
  return AEAD_SUITES.find((s) => s.name === name);
}
export function macSuite(name: string): MacSuite | undefined {
  return MAC_SUITES.find((s) => s.name === name);
}
export function hashSuite(name: string): HashSuite | undefined {
  return HASH_SUITES.find((s) => s.name === name);
}
