/**
 * A fake ringfenced for the CLI's host tests (the real daemon needs AF_ALG, only in the test VMs):
 * a grpc-js server on a Unix socket in a temp dir, serving the real service definitions
 * (serviceDefinition over the generated descriptors) with node:crypto behind them, the documented
 * ciphertext layouts and the documented errors (typed, with ErrorInfo trailers). It counts calls per
 * RPC so tests can tell unary from streaming.
 */
import { timestampNow } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { KeyPurpose } from '../../gen/ringfence/v1/key_pb.js';
import { Availability, StatusService } from '../../gen/ringfence/v1/status_service_pb.js';
import { HashAlgorithm, Suite } from '../../gen/ringfence/v1/suite_pb.js';
import { serviceDefinition } from '../../rpc/service-definition.js';
import { decryptUnary, encryptUnary, FakeError, invalid, parseHeader } from './fake-daemon-crypto.test-support.js';
import { FakeKeys, keyService, unary, type FakeKey, type Recorder } from './fake-daemon-keys.test-support.js';
import { hasher, streamHandlers } from './fake-daemon-streams.test-support.js';

export interface FakeDaemon extends Recorder {
  socketPath: string;
  keys: FakeKeys;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const HMAC: Partial<Record<Suite, string>> = { [Suite.HMAC_SHA256]: 'sha256', [Suite.HMAC_SHA384]: 'sha384', [Suite.HMAC_SHA512]: 'sha512' };

function tooLarge(field: string, n: number, limit: number): void {
  if (n > limit) throw new FakeError(grpc.status.RESOURCE_EXHAUSTED, ErrorReason.PAYLOAD_TOO_LARGE, `${field} of ${n} bytes exceeds the limit of ${limit}`, { field, limit_bytes: String(limit), actual_bytes: String(n) });
}

export interface FakeOptions {
  /** Limits.max_payload_bytes of this daemon (default 1 MiB). */
  maxPayloadBytes?: number;
  /** Limits.max_stream_chunk_bytes (default 1 MiB): the largest plaintext chunk or hash piece a stream message may carry. */
  maxStreamChunkBytes?: number;
}

type Limits = Required<FakeOptions>;

function cryptoService(keys: FakeKeys, rec: Recorder, limits: Limits): grpc.UntypedServiceImplementation {
  const limit = limits.maxPayloadBytes;
  const m = CryptoService.method;
  const encryptWith = (fk: FakeKey, plaintext: Uint8Array, aad: Uint8Array) => {
    tooLarge('plaintext', plaintext.length, limit);
    tooLarge('associated_data', aad.length, 64 * 1024);
    const sealer = keys.sealer(fk);
    return { ciphertext: encryptUnary(sealer, plaintext, aad), keyName: fk.key.name, keyVersion: sealer.version };
  };
  const decrypt = (ciphertext: Uint8Array, aad: Uint8Array) => {
    const c = Buffer.from(ciphertext);
    const h = parseHeader(c);
    if (h.format !== 1) throw invalid(ErrorReason.CIPHERTEXT_MALFORMED, 'malformed ciphertext: a stream ciphertext given to Decrypt', { detail: 'format' });
    const fk = keys.check(keys.byId(h.keyId), KeyPurpose.AEAD);
    const material = fk.material[h.version - 1];
    if (!material) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND, `key "${fk.key.name}" has no version ${h.version}`);
    return { plaintext: decryptUnary(material, c, aad), keyName: fk.key.name, keyVersion: h.version };
  };
  const macOf = (fk: FakeKey, version: number, data: Uint8Array) => {
    const material = fk.material[version - 1];
    if (!material) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND, `key "${fk.key.name}" has no version ${version}`);
    return createHmac(HMAC[fk.key.suite]!, material).update(data).digest();
  };
  return {
    encrypt: unary(rec, m.encrypt, (r) => encryptWith(keys.usable(r.keyName, KeyPurpose.AEAD), r.plaintext, r.associatedData)),
    decrypt: unary(rec, m.decrypt, (r) => decrypt(r.ciphertext, r.associatedData)),
    reEncrypt: unary(rec, m.reEncrypt, (r) => {
      const source = decrypt(r.ciphertext, r.associatedData);
      const destination = keys.usable(r.destinationKeyName || source.keyName, KeyPurpose.AEAD);
      const out = encryptWith(destination, source.plaintext, r.destinationAssociatedData ?? r.associatedData);
      return { ...out, sourceKeyName: source.keyName, sourceKeyVersion: source.keyVersion };
    }),
    generateDataKey: unary(rec, m.generateDataKey, (r) => {
      const dataKey = randomBytes(r.lengthBytes || 32);
      const out = encryptWith(keys.usable(r.keyName, KeyPurpose.AEAD), dataKey, r.associatedData);
      return { ...out, plaintext: r.omitPlaintext ? new Uint8Array(0) : dataKey };
    }),
    computeMac: unary(rec, m.computeMac, (r) => {
      tooLarge('data', r.data.length, MiB);
      const fk = keys.usable(r.keyName, KeyPurpose.MAC);
      return { mac: macOf(fk, fk.key.primaryVersion, r.data), keyName: fk.key.name, keyVersion: fk.key.primaryVersion };
    }),
    verifyMac: unary(rec, m.verifyMac, (r) => {
      const fk = keys.usable(r.keyName, KeyPurpose.MAC);
      const version = r.keyVersion || fk.key.primaryVersion;
      const expected = macOf(fk, version, r.data);
      return { valid: expected.length === r.mac.length && timingSafeEqual(expected, r.mac), keyName: fk.key.name, keyVersion: version };
    }),
    hash: unary(rec, m.hash, (r) => {
      const { algorithm, hash } = hasher(r.algorithm);
      return { digest: hash.update(r.data).digest(), algorithm };
    }),
    generateRandom: unary(rec, m.generateRandom, (r) => {
      if (r.lengthBytes < 1) throw invalid(ErrorReason.INVALID_FIELD, 'length_bytes: at least 1', { field: 'length_bytes' });
      tooLarge('length_bytes', r.lengthBytes, MiB);
      return { data: randomBytes(r.lengthBytes) };
    }),
    ...streamHandlers(keys, rec, limits.maxStreamChunkBytes),
  };
}

function statusService(keys: FakeKeys, rec: Recorder, limits: Limits, startTime = timestampNow()): grpc.UntypedServiceImplementation {
  const available = (driver: string) => ({ availability: Availability.AVAILABLE, driver });
  return {
    getStatus: unary(rec, StatusService.method.getStatus, () => ({
      daemonVersion: '0.1.0-fake',
      startTime,
      pid: process.pid,
      kernelRelease: '6.12.48+deb13-amd64',
      afAlgRestricted: false,
      suites: [
        { suite: Suite.AES_256_GCM, ...available('generic-gcm-aesni') },
        { suite: Suite.CHACHA20_POLY1305, ...available('rfc7539-chacha20-simd') },
        { suite: Suite.AES_256_CCM, ...available('ccm_base(ctr-aes-aesni,cbcmac(aes-aesni))') },
        { suite: Suite.AES_256_CTR_HMAC_SHA256, ...available('ctr-aes-aesni,hmac(sha256-avx2)') },
        { suite: Suite.HMAC_SHA256, ...available('hmac(sha256-avx2)') },
        { suite: Suite.HMAC_SHA384, ...available('hmac(sha384-avx2)') },
        { suite: Suite.HMAC_SHA512, ...available('hmac(sha512-avx2)') },
      ],
      hashAlgorithms: [
        { algorithm: HashAlgorithm.SHA256, ...available('sha256-avx2') },
        { algorithm: HashAlgorithm.BLAKE2B_256, availability: Availability.RESTRICTED, detail: 'blake2b-256: ENOENT under af_alg_restrict=1' },
      ],
      defaultAeadSuite: Suite.AES_256_GCM,
      defaultMacSuite: Suite.HMAC_SHA256,
      keyCount: keys.byName.size,
      limits: {
        maxPayloadBytes: limits.maxPayloadBytes,
        maxAssociatedDataBytes: 64 * 1024,
        maxStreamChunkBytes: limits.maxStreamChunkBytes,
        maxBatchItems: 1000,
        maxSessionInFlight: 1024,
        maxMessageBytes: 4 * MiB + 64 * 1024,
        minRotationPeriod: { seconds: 3600n },
        minDeletionWaitingPeriod: { seconds: 86_400n },
        encryptionsPerVersion: 2n ** 32n,
        maxSessionBufferedBytes: 16 * MiB,
        maxBufferedBytes: 512n * BigInt(MiB),
        maxBufferedBytesPerCaller: 128n * BigInt(MiB),
        maxConnectionsPerCaller: 256,
        maxHashStreamsPerCaller: 64,
        maxCalls: 1024,
        maxCallsPerCaller: 256,
        maxKeys: 1000,
        maxKeysPerCaller: 250,
        maxVersionsPerKey: 1000,
        maxKeyVersions: 8000,
        maxKeyVersionsPerCaller: 2000,
        maxConcurrentStreamsPerConnection: 128,
        maxConnections: 1024,
        connectionIdleTimeout: { seconds: 300n },
        connectionMaxAge: {},
        connectionMaxAgeGrace: { seconds: 60n },
        maxTransforms: 512,
        maxOpSockets: 8,
        maxQueuedRequests: 4096,
        maxQueuedRequestsPerCaller: 1024,
      },
      usage: { connections: 3, bufferedBytes: 2048n, hashStreams: 1, callerConnections: 1, callerBufferedBytes: 1024n, callerHashStreams: 0, calls: 5, callerCalls: 2, keys: 12, keyVersions: 30, callerKeys: 1, callerKeyVersions: 4 },
    })),
  };
}

export async function startFakeDaemon(opts: FakeOptions = {}): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'ringfence-cli-'));
  const socketPath = join(dir, 'ringfence.sock');
  const keys = new FakeKeys();
  const rec: Recorder = { calls: {}, lastRequest: {} };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * MiB + 64 * 1024 });
  const limits: Limits = { maxPayloadBytes: opts.maxPayloadBytes ?? MiB, maxStreamChunkBytes: opts.maxStreamChunkBytes ?? MiB };
  server.addService(serviceDefinition(StatusService), statusService(keys, rec, limits));
  server.addService(serviceDefinition(CryptoService), cryptoService(keys, rec, limits));
  server.addService(serviceDefinition(KeyService), keyService(keys, rec));
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    socketPath,
    keys,
    ...rec,
    async close() {
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
