import type { MessageInitShape } from '@bufbuild/protobuf';
import type { HashRequest, HashResponseSchema, HashStreamRequest, HashStreamResponseSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import { HASH_SUITES, hashSuite, type HashName, type HashSuite } from '../../capabilities/suites.js';
import { hash as kernelHash } from '../engine/suite-ops.js';
import { ApiError, ErrorReason, Status, invalidField } from '../api/errors.js';
import { checkSize, SIZE_HINT, type OpContext } from './context.js';

const NAMES: Record<Exclude<HashAlgorithm, HashAlgorithm.UNSPECIFIED>, HashName> = {
  [HashAlgorithm.SHA256]: 'sha256',
  [HashAlgorithm.SHA384]: 'sha384',
  [HashAlgorithm.SHA512]: 'sha512',
  [HashAlgorithm.SHA3_256]: 'sha3-256',
  [HashAlgorithm.SHA3_512]: 'sha3-512',
  [HashAlgorithm.BLAKE2B_256]: 'blake2b-256',
  [HashAlgorithm.BLAKE2B_512]: 'blake2b-512',
};

/** The suite for a requested algorithm (unspecified = SHA-256), if this kernel lets the daemon use it. */
export function hashSuiteFor(ctx: OpContext, algorithm: HashAlgorithm): { suite: HashSuite; algorithm: HashAlgorithm } {
  const alg = algorithm === HashAlgorithm.UNSPECIFIED ? HashAlgorithm.SHA256 : algorithm;
  const name = NAMES[alg as keyof typeof NAMES];
  const suite = name ? hashSuite(name) : undefined;
  if (!suite) throw invalidField('algorithm', `unknown hash algorithm ${algorithm}`);
  const status = ctx.suiteStatus(suite.name);
  if (status === 'available') return { suite, algorithm: alg };
  const kernelAlgorithm = suite.algorithms[0].name;
  if (status === 'restricted') {
    const allowed = HASH_SUITES.filter((s) => ctx.suiteStatus(s.name) === 'available').map((s) => s.name);
    throw new ApiError(
      Status.FAILED_PRECONDITION,
      ErrorReason.SUITE_RESTRICTED_BY_KERNEL,
      `this kernel refuses ${suite.name} to the daemon (af_alg_restrict=1); ${allowed.length ? `use one it allows (${allowed.join(', ')})` : 'it allows no hash algorithm'}`,
      { suite: suite.name, kernel_algorithm: kernelAlgorithm, allowed: allowed.join(',') },
    );
  }
  throw new ApiError(Status.FAILED_PRECONDITION, ErrorReason.SUITE_UNAVAILABLE, `this kernel does not provide ${suite.name} (${status}); see \`ringfence doctor\``, { suite: suite.name, kernel_algorithm: kernelAlgorithm });
}

/** CryptoService.Hash. */
export async function hash(ctx: OpContext, req: HashRequest): Promise<MessageInitShape<typeof HashResponseSchema>> {
  ctx.authorize('hash');
  const { suite, algorithm } = hashSuiteFor(ctx, req.algorithm);
  const data = checkSize('data', req.data, ctx.limits.maxPayloadBytes, SIZE_HINT.hash);
  return { digest: await kernelHash(ctx.engine, suite, data), algorithm };
}

/**
 * CryptoService.HashStream: the kernel hashes the messages as they arrive (MSG_MORE), holding one op
 * socket for the stream; gRPC flow control bounds what is buffered.
 */
export async function hashStream(ctx: OpContext, messages: AsyncIterable<HashStreamRequest>): Promise<MessageInitShape<typeof HashStreamResponseSchema>> {
  ctx.authorize('hash');
  const it = messages[Symbol.asyncIterator]();
  // Let, not const: handed to the generator and dropped here, so a message already hashed is not
  // kept alive while the stream idles (it is not in maxBufferedBytes; review by helper-104).
  let first: IteratorResult<HashStreamRequest> | undefined = await it.next();
  // Again once the first message (or the end) is here: a reload may have revoked hash since the
  // call was checked, and a revoked caller gets no digest, not even of nothing (helper-113, helper-115).
  ctx.authorize('hash');
  const { suite, algorithm } = hashSuiteFor(ctx, first.done ? HashAlgorithm.UNSPECIFIED : first.value.algorithm);
  let total = 0;
  const limit = ctx.limits.maxStreamChunkBytes;
  async function* pieces(): AsyncGenerator<Buffer> {
    let next: IteratorResult<HashStreamRequest> | undefined = first;
    first = undefined;
    while (next && !next.done) {
      const data = accept(next.value);
      next = undefined;
      if (data.length) yield data;
      next = await it.next();
      // On each arrival, as Encrypt/DecryptStream check theirs: a grant revoked by a reload stops
      // the stream (helper-93), and the end too, or a revoked caller got the digest of what it had
      // sent (helper-118). The first arrival was checked above.
      ctx.authorize('hash');
    }
  }
  function accept(m: HashStreamRequest): Buffer {
    if (m.algorithm !== HashAlgorithm.UNSPECIFIED && m.algorithm !== algorithm) {
      throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.STREAM_PROTOCOL_VIOLATION, 'a later HashStream message names a different algorithm', { field: 'algorithm' });
    }
    const data = checkSize('data', m.data, limit, SIZE_HINT.streamMessage);
    total += data.length;
    return data;
  }
  const digest = await kernelHash(ctx.engine, suite, pieces());
  return { digest, algorithm, dataBytes: BigInt(total) };
}
