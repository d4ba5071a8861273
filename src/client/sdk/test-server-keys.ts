/** The fake server's KeyService: keys in a Map, enough to test the SDK's requests and paging. */
import { create, type DescMessage, type DescMethodUnary } from '@bufbuild/protobuf';
import { timestampFromMs, type Duration } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { ErrorReason } from '../../gen/ringfence/v1/errors_pb.js';
import { KeyOrigin, KeyPurpose, KeySchema, KeyState, type Key } from '../../gen/ringfence/v1/key_pb.js';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { Suite } from '../../gen/ringfence/v1/suite_pb.js';
import { FakeError } from './test-server-crypto.js';
import { unary, type FakeStats } from './test-server.js';

interface NewKey {
  purpose: KeyPurpose;
  suite: Suite;
  rotationPeriod?: Duration;
  deletionProtection: boolean;
  origin: KeyOrigin;
}

export function keyServiceImpl(stats: FakeStats): grpc.UntypedServiceImplementation {
  const keys = new Map<string, Key>();
  const find = (name: string) => {
    const key = keys.get(name);
    if (!key) throw new FakeError(grpc.status.NOT_FOUND, ErrorReason.KEY_NOT_FOUND, `key "${name}" does not exist`, { key_name: name });
    return key;
  };
  const add = (name: string, init: NewKey) => {
    if (keys.has(name)) throw new FakeError(grpc.status.ALREADY_EXISTS, ErrorReason.KEY_ALREADY_EXISTS, `key "${name}" already exists`, { key_name: name });
    const purpose = init.purpose || KeyPurpose.AEAD;
    const suite = init.suite || (purpose === KeyPurpose.MAC ? Suite.HMAC_SHA256 : Suite.AES_256_GCM);
    const key = create(KeySchema, { ...init, id: randomBytes(16).toString('hex'), name, purpose, suite, state: KeyState.ENABLED, primaryVersion: 1, minDecryptionVersion: 1 });
    keys.set(name, key);
    return { key };
  };
  const u = <I extends DescMessage, O extends DescMessage>(m: DescMethodUnary<I, O>, f: Parameters<typeof unary<I, O>>[2]) => unary(stats, m, f);
  const m = KeyService.method;
  return {
    createKey: u(m.createKey, (r) => add(r.name, { purpose: r.purpose, suite: r.suite, rotationPeriod: r.rotationPeriod, deletionProtection: r.deletionProtection, origin: KeyOrigin.GENERATED_IN_KERNEL })),
    importKey: u(m.importKey, (r) => add(r.name, { purpose: r.purpose, suite: r.suite, deletionProtection: r.deletionProtection, origin: KeyOrigin.IMPORTED })),
    getKey: u(m.getKey, (r) => ({ key: find(r.name) })),
    listKeys: u(m.listKeys, (r) => {
      const names = [...keys.keys()].sort();
      const start = r.pageToken ? Number(r.pageToken) : 0;
      if (!Number.isInteger(start) || start < 0 || start > names.length) throw new FakeError(grpc.status.INVALID_ARGUMENT, ErrorReason.INVALID_PAGE_TOKEN, 'bad page token');
      const end = start + Math.min(r.pageSize || 100, 1000);
      return { keys: names.slice(start, end).map((n) => keys.get(n)!), nextPageToken: end < names.length ? String(end) : '' };
    }),
    rotateKey: u(m.rotateKey, (r) => {
      const key = find(r.name);
      key.primaryVersion += 1;
      return { key };
    }),
    updateKey: u(m.updateKey, (r) => {
      const key = find(r.name);
      if (r.minDecryptionVersion !== undefined) key.minDecryptionVersion = r.minDecryptionVersion;
      if (r.rotationPeriod) key.rotationPeriod = r.rotationPeriod;
      if (r.deletionProtection !== undefined) key.deletionProtection = r.deletionProtection;
      return { key };
    }),
    disableKey: u(m.disableKey, (r) => ({ key: Object.assign(find(r.name), { state: KeyState.DISABLED }) })),
    enableKey: u(m.enableKey, (r) => ({ key: Object.assign(find(r.name), { state: KeyState.ENABLED }) })),
    scheduleKeyDeletion: u(m.scheduleKeyDeletion, (r) => {
      const key = find(r.name);
      if (key.deletionProtection) throw new FakeError(grpc.status.FAILED_PRECONDITION, ErrorReason.DELETION_PROTECTED, 'deletion protected', { key_name: r.name });
      const waitMs = r.waitingPeriod ? Number(r.waitingPeriod.seconds) * 1000 : 7 * 86_400_000;
      return { key: Object.assign(key, { state: KeyState.PENDING_DELETION, deletionTime: timestampFromMs(Date.now() + waitMs) }) };
    }),
    cancelKeyDeletion: u(m.cancelKeyDeletion, (r) => ({ key: Object.assign(find(r.name), { state: KeyState.DISABLED, deletionTime: undefined }) })),
  };
}
