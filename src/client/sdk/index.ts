/**
 * The ringfence SDK: a typed client for the ringfence daemon (ringfenced) over its Unix socket.
 *
 *   const client = new RingfenceClient();
 *   const { ciphertext } = await client.encrypt('app-key', 'secret', { associatedData: 'user:42' });
 *   const { plaintext } = await client.decrypt(ciphertext, { associatedData: 'user:42' });
 *   await client.close();
 *
 * Failures are RingfenceErrors (gRPC code + ErrorReason + metadata); test them with the is*()
 * predicates. Response types are the generated protobuf-es messages, re-exported here; methods take
 * plain arguments and option objects, and batch methods items typed BatchEncryptItem & co.
 */
export { RingfenceClient, DEFAULT_TIMEOUT_MS, type BatchComputeMacItem, type BatchDecryptItem, type BatchEncryptItem, type RingfenceClientOptions } from './client.js';
export type {
  CreateKeyOptions,
  GetKeyOptions,
  ImportKeyOptions,
  ListKeysOptions,
  ScheduleKeyDeletionOptions,
  UpdateKeyOptions,
} from './key-methods.js';
export { MAX_ROTATION_PERIOD, MAX_WAITING_PERIOD } from './key-methods.js';
export type {
  CiphertextInput,
  Data,
  DecryptOptions,
  EncryptOptions,
  GenerateDataKeyOptions,
  HashAlgorithmInput,
  ReEncryptOptions,
  VerifyMacOptions,
} from './requests.js';
export type { CallOptions } from './call-options.js';
export { RingfenceSession, type SessionOptions } from './session.js';
export type { SessionCounts } from './session-packing.js';
export { EncryptStream, type EncryptStreamOptions } from './encrypt-stream.js';
export { DecryptStream, type DecryptStreamOptions } from './decrypt-stream.js';
export { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, type StreamKeyInfo } from './rpc-duplex.js';
export type { HashSource, HashStreamOptions } from './hash-stream.js';
export { batchResults } from './batch.js';
export {
  RingfenceError,
  isAlreadyExists,
  isAuthenticationFailed,
  isCancelled,
  isDaemonUnreachable,
  isDeadlineExceeded,
  isFailedPrecondition,
  isInternal,
  isInvalidArgument,
  isNotFound,
  isPermissionDenied,
  isResourceExhausted,
  isRingfenceError,
  isUnavailable,
  isUnimplemented,
} from './errors.js';
export { CIPHERTEXT_TEXT_PREFIX, ciphertextFromText, ciphertextToText } from './ciphertext-text.js';
export {
  HASH_ALGORITHM_NAMES,
  SUITE_NAMES,
  hashAlgorithmName,
  keyPurposeName,
  parseHashAlgorithm,
  parseKeyPurpose,
  parseKeyView,
  parseSuite,
  suiteName,
  type HashAlgorithmName,
  type KeyPurposeName,
  type KeyViewName,
  type SuiteName,
} from './names.js';
export { clientSocketPath, defaultSocketPath } from '../../rpc/socket-path.js';

// The API's messages and enums, so callers need not reach into src/gen.
export { ErrorReason, type ItemStatus } from '../../gen/ringfence/v1/errors_pb.js';
export {
  Availability,
  type GetStatusResponse,
  type HashAlgorithmStatus,
  type Limits,
  type SuiteStatus,
  type Usage,
} from '../../gen/ringfence/v1/status_service_pb.js';
export { HashAlgorithm, Suite } from '../../gen/ringfence/v1/suite_pb.js';
export { KeyOrigin, KeyPurpose, KeyState, KeyVersionState, KeyView, type Key, type KeyVersion } from '../../gen/ringfence/v1/key_pb.js';
export type { ListKeysResponse } from '../../gen/ringfence/v1/key_service_pb.js';
export type {
  ComputeMacResponse,
  DecryptResponse,
  EncryptResponse,
  GenerateDataKeyResponse,
  GenerateRandomResponse,
  HashResponse,
  HashStreamResponse,
  ReEncryptResponse,
  VerifyMacResponse,
} from '../../gen/ringfence/v1/crypto_pb.js';
export type { BatchComputeMacResponse, BatchDecryptResponse, BatchEncryptResponse } from '../../gen/ringfence/v1/batch_pb.js';
export { status as GrpcStatus } from '@grpc/grpc-js';
