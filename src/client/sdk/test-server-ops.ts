/** The fake server's cryptographic operations, shared by its unary, batch and Session handlers. */
import * as grpc from '@grpc/grpc-js';
import { timingSafeEqual, randomBytes } from 'node:crypto';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type * as pb from '../../gen/ringfence/v1/crypto_pb.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import * as fake from './test-server-crypto.js';

export function cryptoOps() {
  return {
    encrypt(r: pb.EncryptRequest): MessageInitShape<typeof pb.EncryptResponseSchema> {
      if (r.plaintext.length > 1024 * 1024) throw new fake.FakeError(grpc.status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, 'plaintext too large', { field: 'plaintext' });
      return { ciphertext: fake.encrypt(r.keyName, r.plaintext, r.associatedData), keyName: r.keyName, keyVersion: 1 };
    },
    decrypt(r: pb.DecryptRequest): MessageInitShape<typeof pb.DecryptResponseSchema> {
      const { keyName, plaintext } = fake.decrypt(r.ciphertext, r.associatedData);
      return { plaintext, keyName, keyVersion: 1 };
    },
    reEncrypt(r: pb.ReEncryptRequest): MessageInitShape<typeof pb.ReEncryptResponseSchema> {
      const { keyName, plaintext } = fake.decrypt(r.ciphertext, r.associatedData);
      const destination = r.destinationKeyName || keyName;
      const ciphertext = fake.encrypt(destination, plaintext, r.destinationAssociatedData ?? r.associatedData);
      return { ciphertext, keyName: destination, keyVersion: 1, sourceKeyName: keyName, sourceKeyVersion: 1 };
    },
    generateDataKey(r: pb.GenerateDataKeyRequest): MessageInitShape<typeof pb.GenerateDataKeyResponseSchema> {
      const key = randomBytes(r.lengthBytes || 32);
      const ciphertext = fake.encrypt(r.keyName, key, r.associatedData);
      return { ciphertext, plaintext: r.omitPlaintext ? new Uint8Array(0) : key, keyName: r.keyName, keyVersion: 1 };
    },
    computeMac(r: pb.ComputeMacRequest): MessageInitShape<typeof pb.ComputeMacResponseSchema> {
      return { mac: fake.mac(r.keyName, r.data), keyName: r.keyName, keyVersion: 1 };
    },
    verifyMac(r: pb.VerifyMacRequest): MessageInitShape<typeof pb.VerifyMacResponseSchema> {
      const expected = fake.mac(r.keyName, r.data);
      const valid = expected.length === r.mac.length && timingSafeEqual(expected, r.mac);
      return { valid, keyName: r.keyName, keyVersion: r.keyVersion || 1 };
    },
    hash(r: pb.HashRequest): MessageInitShape<typeof pb.HashResponseSchema> {
      const { algorithm, hash } = fake.hasher(r.algorithm);
      return { digest: hash.update(r.data).digest(), algorithm };
    },
    generateRandom(r: pb.GenerateRandomRequest): MessageInitShape<typeof pb.GenerateRandomResponseSchema> {
      if (r.lengthBytes < 1) throw new fake.FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.INVALID_FIELD, 'length_bytes must be at least 1', { field: 'length_bytes' });
      return { data: randomBytes(r.lengthBytes) };
    },
  };
}

export type CryptoOps = ReturnType<typeof cryptoOps>;
