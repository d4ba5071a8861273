/** StatusService.GetStatus: the daemon's version, what its kernel allows it, its key count, limits and their usage. */
import type * as grpc from '@grpc/grpc-js';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Availability, StatusService, type UsageSchema } from '../../gen/ringfence/v1/status_service_pb.js';
import type { Principal } from '../identity/principal.js';
import { HashAlgorithm } from '../../gen/ringfence/v1/suite_pb.js';
import { isRestricted, readRestrict, restrictChangedSince, type AlgStatus, type CapabilityReport, type SuiteReport } from '../../capabilities/probe.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { Limits } from '../config.js';
import { unary, type HandlerDeps } from './handler.js';
import { suiteEnum } from './suite-enum.js';

const AVAILABILITY: Record<AlgStatus, Availability> = {
  available: Availability.AVAILABLE,
  restricted: Availability.RESTRICTED,
  missing: Availability.MISSING,
  error: Availability.ERROR,
};

const HASHES: Record<string, HashAlgorithm> = {
  sha256: HashAlgorithm.SHA256,
  sha384: HashAlgorithm.SHA384,
  sha512: HashAlgorithm.SHA512,
  'sha3-256': HashAlgorithm.SHA3_256,
  'sha3-512': HashAlgorithm.SHA3_512,
  'blake2b-256': HashAlgorithm.BLAKE2B_256,
  'blake2b-512': HashAlgorithm.BLAKE2B_512,
};

function describe(s: SuiteReport, restrict: number | string) {
  const drivers = s.algorithms.map((a) => a.driver).filter(Boolean).join(',');
  const detail = s.status === 'available' ? '' : s.algorithms.filter((a) => a.status !== 'available').map((a) => `${a.name}: ${a.errno ?? a.status}${a.status === 'restricted' ? ` under af_alg_restrict=${restrict}` : ''}`).join('; ');
  return { availability: AVAILABILITY[s.status], driver: s.status === 'available' ? drivers : '', detail };
}

export interface StatusInfo {
  version: string;
  startTime: number;
  report: CapabilityReport;
  /** The daemon's limits as configured (durations in milliseconds). */
  limits: Limits;
  /** What the limits count now, daemon-wide and for the calling principal (the key counts GetStatus adds). */
  usage?: (principal: Principal | undefined) => MessageInitShape<typeof UsageSchema>;
  /** The errno while the audit trail cannot be written (daemon/log-sink.ts). */
  auditFailing?: () => string | undefined;
  /** The af_alg_restrict sysctl as it reads now (probe.ts readRestrict; replaced in tests). */
  readRestrict?: typeof readRestrict;
}

/** Usage's key counts: the ones the key caps check, the caller's own only (no uid, none). */
function keyUsage(keys: KeyManager, principal: Principal | undefined) {
  const n = keys.keyCounts(principal?.uid);
  return { keys: n.keys, keyVersions: n.versions, callerKeys: n.callerKeys, callerKeyVersions: n.callerVersions };
}

export function statusServiceHandlers(keys: KeyManager, info: StatusInfo, deps: HandlerDeps): grpc.UntypedServiceImplementation {
  const { report, limits } = info;
  return {
    getStatus: unary(StatusService.method.getStatus, deps, async (_req, access) => ({
      daemonVersion: info.version,
      startTime: timestampFromMs(info.startTime),
      pid: process.pid,
      kernelRelease: report.kernel.release,
      // As the probe reads it: any value but 0 restricts, and so may one it could not read (an absent sysctl does not).
      afAlgRestricted: isRestricted(report),
      suites: report.suites.filter((s) => s.kind !== 'hash').map((s) => ({ suite: suiteEnum(s.name), ...describe(s, report.restrict.value ?? 'unknown') })),
      hashAlgorithms: report.suites.filter((s) => s.kind === 'hash').map((s) => ({ algorithm: HASHES[s.name] ?? HashAlgorithm.UNSPECIFIED, ...describe(s, report.restrict.value ?? 'unknown') })),
      defaultAeadSuite: suiteEnum(report.defaultAeadSuite ?? ''),
      defaultMacSuite: suiteEnum(report.defaultMacSuite ?? ''),
      keyCount: keys.size,
      limits: {
        maxPayloadBytes: limits.maxPayloadBytes,
        maxAssociatedDataBytes: limits.maxAssociatedDataBytes,
        maxStreamChunkBytes: limits.maxStreamChunkBytes,
        maxBatchItems: limits.maxBatchItems,
        maxSessionInFlight: limits.maxSessionInFlight,
        maxMessageBytes: limits.maxMessageBytes,
        minRotationPeriod: durationFromMs(limits.minRotationPeriod),
        minDeletionWaitingPeriod: durationFromMs(limits.minDeletionWaitingPeriod),
        encryptionsPerVersion: BigInt(limits.encryptionsPerVersion),
        maxSessionBufferedBytes: limits.maxSessionBufferedBytes,
        maxBufferedBytes: BigInt(limits.maxBufferedBytes),
        maxBufferedBytesPerCaller: BigInt(limits.maxBufferedBytesPerCaller),
        maxConnectionsPerCaller: limits.maxConnectionsPerCaller,
        maxHashStreamsPerCaller: limits.maxHashStreamsPerCaller,
        maxCalls: limits.maxCalls,
        maxCallsPerCaller: limits.maxCallsPerCaller,
        maxKeys: limits.maxKeys,
        maxKeysPerCaller: limits.maxKeysPerCaller,
        maxVersionsPerKey: limits.maxVersionsPerKey,
        maxKeyVersions: limits.maxKeyVersions,
        maxKeyVersionsPerCaller: limits.maxKeyVersionsPerCaller,
        maxConcurrentStreamsPerConnection: limits.maxConcurrentStreamsPerConnection,
        maxConnections: limits.maxConnections,
        connectionIdleTimeout: durationFromMs(limits.connectionIdleTimeout),
        connectionMaxAge: durationFromMs(limits.connectionMaxAge),
        connectionMaxAgeGrace: durationFromMs(limits.connectionMaxAgeGrace),
        maxTransforms: limits.maxTransforms,
        maxOpSockets: limits.maxOpSockets,
        maxQueuedRequests: limits.maxQueuedRequests,
        maxQueuedRequestsPerCaller: limits.maxQueuedRequestsPerCaller,
      },
      usage: { ...info.usage?.(access.principal), ...keyUsage(keys, access.principal) },
      auditFailure: info.auditFailing?.() ?? '',
      afAlgRestrictChanged: restrictChangedSince(report, (info.readRestrict ?? readRestrict)()) ?? '',
    })),
  };
}
