/**
 * The CLI tests' fake daemon, key part (tests only): KeyService over an in-memory Map with versions,
 * states, times and the daemon's documented errors. Pages hold at most 2 keys, so `key list` must
 * follow page tokens.
 */
import { create, type DescMessage, type DescMethodUnary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { timestampFromMs, timestampNow } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { KeyOrigin, KeyPurpose, KeySchema, KeyState, KeyVersionSchema, KeyVersionState, type Key } from '../../gen/ringfence/v1/key_pb.js';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { Suite } from '../../gen/ringfence/v1/suite_pb.js';
import { FakeError, invalid, toStatus, type Sealer } from './fake-daemon-crypto.test-support.js';

export interface FakeKey {
  key: Key;
  /** Material of version v at index v - 1. */
  material: Buffer[];
}

export interface Recorder {
  calls: Record<string, number>;
  lastRequest: Record<string, unknown>;
}

const MATERIAL_BYTES: Record<number, number> = { 1: 32, 2: 32, 3: 32, 4: 64, 5: 32, 6: 48, 7: 64 };
const SUITE_IDS: Record<number, number> = { [Suite.AES_256_GCM]: 1, [Suite.CHACHA20_POLY1305]: 2, [Suite.AES_256_CCM]: 3, [Suite.AES_256_CTR_HMAC_SHA256]: 4 };
const isMacSuite = (s: Suite) => s >= Suite.HMAC_SHA256;

export class FakeKeys {
  readonly byName = new Map<string, FakeKey>();

  find(name: string): FakeKey {
    const fk = this.byName.get(name);
    if (!fk) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, `key "${name}" not found`, { key_name: name });
    return fk;
  }

  byId(id: string): FakeKey {
    for (const fk of this.byName.values()) if (fk.key.id === id) return fk;
    throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, `no key has id ${id}`, { key_id: id });
  }

  /** A key that may do `purpose` now: enabled, of that purpose. */
  usable(name: string, purpose: KeyPurpose): FakeKey {
    return this.check(this.find(name), purpose);
  }

  check(fk: FakeKey, purpose: KeyPurpose): FakeKey {
    const name = fk.key.name;
    if (fk.key.state === KeyState.DISABLED) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_DISABLED, `key "${name}" is disabled`, { key_name: name });
    if (fk.key.state === KeyState.PENDING_DELETION) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION, `key "${name}" is pending deletion`, { key_name: name });
    if (fk.key.purpose !== purpose) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_PURPOSE_MISMATCH, `key "${name}" is not a ${purpose === KeyPurpose.AEAD ? 'AEAD' : 'MAC'} key`, { key_name: name });
    return fk;
  }

  /** What seals with version `version` (default: the primary), counting one encryption. */
  sealer(fk: FakeKey, version = fk.key.primaryVersion): Sealer {
    const v = fk.key.versions[version - 1];
    if (!v) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_VERSION_NOT_FOUND, `key "${fk.key.name}" has no version ${version}`, { key_name: fk.key.name, key_version: String(version) });
    v.encryptionCount += 1n;
    return { keyId: Buffer.from(fk.key.id, 'hex'), suiteId: SUITE_IDS[fk.key.suite] ?? 0, version, material: fk.material[version - 1]! };
  }

  add(name: string, origin: KeyOrigin, r: { purpose: KeyPurpose; suite: Suite; rotationPeriod?: { seconds: bigint }; material?: Uint8Array }): { key: Key } {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw invalid(ErrorReason.INVALID_FIELD, 'name: must be 1 to 64 characters from [A-Za-z0-9._-]', { field: 'name' });
    if (this.byName.has(name)) throw new FakeError(grpc.status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS, `a key named "${name}" already exists`, { key_name: name });
    const suite = r.suite || (r.purpose === KeyPurpose.MAC ? Suite.HMAC_SHA256 : Suite.AES_256_GCM);
    const purpose = r.purpose || (isMacSuite(suite) ? KeyPurpose.MAC : KeyPurpose.AEAD);
    if (isMacSuite(suite) !== (purpose === KeyPurpose.MAC)) throw invalid(ErrorReason.SUITE_PURPOSE_MISMATCH, 'the suite does not fit the purpose', { field: 'suite' });
    if (r.rotationPeriod && r.rotationPeriod.seconds > 0n && r.rotationPeriod.seconds < 3600n) {
      throw invalid(ErrorReason.INVALID_FIELD, 'rotation_period: at least 1h', { field: 'rotation_period', constraint: 'at least 1h' });
    }
    const material = r.material ? this.material(suite, r.material) : randomBytes(MATERIAL_BYTES[suite]!);
    const now = timestampNow();
    const rotation = r.rotationPeriod?.seconds ? r.rotationPeriod : undefined;
    const key = create(KeySchema, {
      id: randomBytes(16).toString('hex'),
      name,
      purpose,
      suite,
      origin,
      state: KeyState.ENABLED,
      primaryVersion: 1,
      minDecryptionVersion: 1,
      rotationPeriod: rotation,
      nextRotationTime: rotation ? timestampFromMs(Date.now() + Number(rotation.seconds) * 1000) : undefined,
      createTime: now,
      updateTime: now,
      creatorUid: process.getuid!(),
      versions: [this.version(1, purpose)],
    });
    this.byName.set(name, { key, material: [material] });
    return { key };
  }

  material(suite: Suite, m: Uint8Array): Buffer {
    if (m.length !== MATERIAL_BYTES[suite]) {
      throw invalid(ErrorReason.KEY_MATERIAL_INVALID, `key material must be ${MATERIAL_BYTES[suite]} bytes for this suite, got ${m.length}`, { field: 'material', expected_bytes: String(MATERIAL_BYTES[suite]), actual_bytes: String(m.length) });
    }
    return Buffer.from(m);
  }

  version(version: number, purpose: KeyPurpose) {
    return create(KeyVersionSchema, { version, state: KeyVersionState.ENABLED, createTime: timestampNow(), encryptionLimit: purpose === KeyPurpose.AEAD ? 1n << 32n : 0n });
  }
}

type Impl<I extends DescMessage, O extends DescMessage> = (request: MessageShape<I>) => MessageInitShape<O>;

/** A grpc-js unary handler that records the call and turns FakeErrors into statuses. */
export function unary<I extends DescMessage, O extends DescMessage>(rec: Recorder, method: DescMethodUnary<I, O>, impl: Impl<I, O>): grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>> {
  return (call, callback) => {
    rec.calls[method.name] = (rec.calls[method.name] ?? 0) + 1;
    rec.lastRequest[method.name] = call.request;
    try {
      callback(null, create(method.output, impl(call.request)));
    } catch (err) {
      callback(toStatus(err));
    }
  };
}

export function keyService(keys: FakeKeys, rec: Recorder): grpc.UntypedServiceImplementation {
  const m = KeyService.method;
  const touch = (fk: FakeKey) => ((fk.key.updateTime = timestampNow()), { key: fk.key });
  const setState = (fk: FakeKey, state: KeyState) => ((fk.key.state = state), touch(fk));
  const changeable = (name: string) => {
    const fk = keys.find(name);
    if (fk.key.state === KeyState.PENDING_DELETION) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_PENDING_DELETION, `key "${name}" is pending deletion`, { key_name: name });
    return fk;
  };
  return {
    createKey: unary(rec, m.createKey, (r) => keys.add(r.name, KeyOrigin.GENERATED_IN_KERNEL, r)),
    importKey: unary(rec, m.importKey, (r) => {
      if (r.material.length === 0) throw invalid(ErrorReason.INVALID_FIELD, 'material: required', { field: 'material' });
      // Like the daemon: no suite given -> chosen from the purpose and the material's length.
      const suite = r.suite || (r.purpose === KeyPurpose.MAC ? ({ 32: Suite.HMAC_SHA256, 48: Suite.HMAC_SHA384, 64: Suite.HMAC_SHA512 }[r.material.length] ?? Suite.HMAC_SHA256) : r.material.length === 64 ? Suite.AES_256_CTR_HMAC_SHA256 : Suite.AES_256_GCM);
      return keys.add(r.name, KeyOrigin.IMPORTED, { ...r, suite });
    }),
    getKey: unary(rec, m.getKey, (r) => ({ key: keys.find(r.name).key })),
    listKeys: unary(rec, m.listKeys, (r) => {
      const names = [...keys.byName.keys()].sort();
      const start = r.pageToken ? Number(r.pageToken) : 0;
      if (!Number.isInteger(start) || start < 0 || start > names.length) throw invalid(ErrorReason.INVALID_PAGE_TOKEN, 'invalid page token');
      const end = start + Math.min(r.pageSize || 100, 2);
      const page = names.slice(start, end).map((n) => create(KeySchema, { ...keys.byName.get(n)!.key, versions: [] }));
      return { keys: page, nextPageToken: end < names.length ? String(end) : '' };
    }),
    rotateKey: unary(rec, m.rotateKey, (r) => {
      const fk = changeable(r.name);
      const imported = fk.key.origin === KeyOrigin.IMPORTED;
      if (imported !== r.material.length > 0) {
        throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_ORIGIN_MISMATCH, imported ? 'an imported key rotates only with new material' : 'a generated key rotates without material', { key_name: r.name });
      }
      fk.material.push(imported ? keys.material(fk.key.suite, r.material) : randomBytes(MATERIAL_BYTES[fk.key.suite]!));
      fk.key.primaryVersion += 1;
      fk.key.versions.push(keys.version(fk.key.primaryVersion, fk.key.purpose));
      fk.key.rotateTime = timestampNow();
      return touch(fk);
    }),
    updateKey: unary(rec, m.updateKey, (r) => touch(changeable(r.name))),
    disableKey: unary(rec, m.disableKey, (r) => setState(changeable(r.name), KeyState.DISABLED)),
    enableKey: unary(rec, m.enableKey, (r) => setState(changeable(r.name), KeyState.ENABLED)),
    scheduleKeyDeletion: unary(rec, m.scheduleKeyDeletion, (r) => {
      const fk = changeable(r.name);
      const seconds = r.waitingPeriod ? Number(r.waitingPeriod.seconds) : 7 * 86_400;
      if (seconds < 86_400 || seconds > 365 * 86_400) throw invalid(ErrorReason.INVALID_FIELD, 'waiting_period: from 1 day to 365 days', { field: 'waiting_period' });
      Object.assign(fk.key, { state: KeyState.PENDING_DELETION, deletionTime: timestampFromMs(Date.now() + seconds * 1000) });
      return touch(fk);
    }),
    cancelKeyDeletion: unary(rec, m.cancelKeyDeletion, (r) => {
      const fk = keys.find(r.name);
      if (fk.key.state !== KeyState.PENDING_DELETION) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.KEY_NOT_PENDING_DELETION, `key "${r.name}" is not pending deletion`, { key_name: r.name });
      Object.assign(fk.key, { state: KeyState.DISABLED, deletionTime: undefined });
      return touch(fk);
    }),
  };
}
