/** KeyRecord (what the daemon persists) -> the API's Key message. */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { KeyOrigin, KeyPurpose, KeyState, KeyVersionState, KeyView, type KeySchema } from '../../gen/ringfence/v1/key_pb.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { KeyRecord } from '../keys/model.js';
import { suiteEnum } from './suite-enum.js';

const STATE = { enabled: KeyState.ENABLED, disabled: KeyState.DISABLED, pending_deletion: KeyState.PENDING_DELETION } as const;

export function keyMessage(keys: KeyManager, r: KeyRecord, view: KeyView = KeyView.FULL): MessageInitShape<typeof KeySchema> {
  const next = keys.scheduledRotationTime(r);
  const limit = BigInt(keys.encryptionLimit(r));
  return {
    id: r.id,
    name: r.name,
    purpose: r.purpose === 'aead' ? KeyPurpose.AEAD : KeyPurpose.MAC,
    suite: suiteEnum(r.suite),
    origin: r.origin === 'generated' ? KeyOrigin.GENERATED_IN_KERNEL : KeyOrigin.IMPORTED,
    state: STATE[r.state],
    primaryVersion: r.versions.length,
    minDecryptionVersion: r.minDecryptionVersion,
    deletionProtection: r.deletionProtection,
    createTime: timestampFromMs(r.createTime),
    updateTime: timestampFromMs(r.updateTime),
    ...(r.rotateTime !== null ? { rotateTime: timestampFromMs(r.rotateTime) } : {}),
    ...(r.rotationPeriodMs !== null ? { rotationPeriod: durationFromMs(r.rotationPeriodMs) } : {}),
    ...(next !== null ? { nextRotationTime: timestampFromMs(next) } : {}),
    ...(r.deletionTime !== null ? { deletionTime: timestampFromMs(r.deletionTime) } : {}),
    ...(r.creatorUid !== undefined ? { creatorUid: r.creatorUid } : {}),
    versions:
      view === KeyView.BASIC
        ? []
        : r.versions.map((v) => ({
            version: v.version,
            state: v.version >= r.minDecryptionVersion ? KeyVersionState.ENABLED : KeyVersionState.DISABLED,
            createTime: timestampFromMs(v.createTime),
            encryptionCount: BigInt(keys.encryptionCount(r, v.version)),
            encryptionLimit: limit,
          })),
  };
}
