/**
 * The fake server's stand-in cryptography (tests only): real AES-256-GCM from node:crypto under a
 * key derived from the key's name, in formats of its own. It lets the SDK's tests check round
 * trips and tamper detection of the transport; the daemon's real formats are tested elsewhere.
 */
import * as grpc from '@grpc/grpc-js';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';

/** An error the fake raises: a gRPC code plus the ErrorInfo the daemon would send. */
export class FakeError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly reason: ErrorReason,
    message: string,
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const keyMaterial = (name: string): Buffer => createHash('sha256').update(`fake-key:${name}`).digest();

/** Key names with special behaviour, so tests can provoke each kind of failure. */
export function checkKey(name: string): void {
  if (name.startsWith('missing')) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, `key "${name}" does not exist`, { key_name: name });
  if (name === 'disabled') throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED, `key "${name}" is disabled`, { key_name: name });
  if (name === 'no-details') throw new FakeError(grpc.status.INTERNAL, ErrorReason.UNSPECIFIED, 'something broke');
  if (name === 'denied') throw new FakeError(grpc.status.PERMISSION_DENIED, ErrorReason.PERMISSION_DENIED, 'uid 1000 may not use this key', { uid: '1000', key_name: name });
}

export function seal(key: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
}

export function open(key: Buffer, sealed: Uint8Array, aad: Uint8Array): Buffer {
  const s = Buffer.from(sealed);
  if (s.length < 28) throw new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, 'ciphertext too short', { detail: 'short' });
  const d = createDecipheriv('aes-256-gcm', key, s.subarray(0, 12));
  d.setAAD(aad);
  d.setAuthTag(s.subarray(s.length - 16));
  try {
    return Buffer.concat([d.update(s.subarray(12, s.length - 16)), d.final()]);
  } catch {
    throw new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.AUTHENTICATION_FAILED, 'authentication failed');
  }
}

/** Unary ciphertext: name length, name, then the sealed plaintext (header authenticated). */
export function encrypt(keyName: string, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  checkKey(keyName);
  const header = Buffer.concat([Buffer.from([keyName.length]), Buffer.from(keyName)]);
  return Buffer.concat([header, seal(keyMaterial(keyName), plaintext, Buffer.concat([header, aad]))]);
}

export function decrypt(ciphertext: Uint8Array, aad: Uint8Array): { keyName: string; plaintext: Buffer } {
  const c = Buffer.from(ciphertext);
  const n = c[0] ?? 0;
  if (c.length < 1 + n) throw new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.CIPHERTEXT_MALFORMED, 'ciphertext too short', { detail: 'short' });
  const keyName = c.subarray(1, 1 + n).toString();
  checkKey(keyName);
  return { keyName, plaintext: open(keyMaterial(keyName), c.subarray(1 + n), Buffer.concat([c.subarray(0, 1 + n), aad])) };
}

export const mac = (keyName: string, data: Uint8Array): Buffer => {
  checkKey(keyName);
  return createHmac('sha256', keyMaterial(keyName)).update(data).digest();
};

const NODE_HASHES: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.UNSPECIFIED]: 'sha256',
  [HashAlgorithm.SHA256]: 'sha256',
  [HashAlgorithm.SHA384]: 'sha384',
  [HashAlgorithm.SHA512]: 'sha512',
  [HashAlgorithm.SHA3_256]: 'sha3-256',
  [HashAlgorithm.SHA3_512]: 'sha3-512',
  [HashAlgorithm.BLAKE2B_512]: 'blake2b512',
};

/** node:crypto has no BLAKE2b-256: the fake refuses it as a restricted kernel would. */
export function hasher(algorithm: HashAlgorithm): { algorithm: HashAlgorithm; hash: ReturnType<typeof createHash> } {
  const name = NODE_HASHES[algorithm];
  if (!name) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.SUITE_RESTRICTED_BY_KERNEL, 'the kernel refuses this algorithm', { suite: String(algorithm) });
  return { algorithm: algorithm === HashAlgorithm.UNSPECIFIED ? HashAlgorithm.SHA256 : algorithm, hash: createHash(name) };
}
