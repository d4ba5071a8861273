/**
 * How keys and the daemon's status look on the command line: JSON documents (enum values as their
 * CLI names such as "aes-256-gcm" and "pending-deletion", times as ISO 8601 strings, durations in
 * seconds, counters as numbers) and the human text forms.
 */
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  Availability,
  hashAlgorithmName,
  KeyOrigin,
  keyPurposeName,
  KeyState,
  KeyVersionState,
  suiteName,
  type GetStatusResponse,
  type Key,
  type KeyVersion,
  type Limits,
  type Usage,
} from '../sdk/index.js';
import { durationMs, formatDuration } from './args.js';

const STATES: Record<KeyState, string> = {
  [KeyState.UNSPECIFIED]: 'unspecified',
  [KeyState.ENABLED]: 'enabled',
  [KeyState.DISABLED]: 'disabled',
  [KeyState.PENDING_DELETION]: 'pending-deletion',
};
const ORIGINS: Record<KeyOrigin, string> = {
  [KeyOrigin.UNSPECIFIED]: 'unspecified',
  [KeyOrigin.GENERATED_IN_KERNEL]: 'generated',
  [KeyOrigin.IMPORTED]: 'imported',
};
const VERSION_STATES: Record<KeyVersionState, string> = {
  [KeyVersionState.UNSPECIFIED]: 'unspecified',
  [KeyVersionState.ENABLED]: 'enabled',
  [KeyVersionState.DISABLED]: 'disabled',
};
const AVAILABILITY: Record<Availability, string> = {
  [Availability.UNSPECIFIED]: 'unspecified',
  [Availability.AVAILABLE]: 'available',
  [Availability.RESTRICTED]: 'restricted',
  [Availability.MISSING]: 'missing',
  [Availability.ERROR]: 'error',
};

// A value newer than this CLI still prints, as its number, rather than crashing.
const named = (table: Record<number, string>, v: number) => table[v] ?? `unknown-${v}`;
const or = (name: string | undefined, v: number) => name ?? `unknown-${v}`;
const iso = (t: Timestamp | undefined) => (t === undefined ? null : timestampDate(t).toISOString());
const seconds = (d: Parameters<typeof durationMs>[0]) => {
  const ms = durationMs(d);
  return ms === undefined || ms === 0 ? null : ms / 1000;
};
// uint64 counters fit a JSON number until 2^53; beyond that a string keeps them exact.
const count = (n: bigint) => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString());

export function keyJson(k: Key, withVersions = true): Record<string, unknown> {
  return {
    name: k.name,
    id: k.id,
    purpose: or(keyPurposeName(k.purpose), k.purpose),
    suite: or(suiteName(k.suite), k.suite),
    origin: named(ORIGINS, k.origin),
    state: named(STATES, k.state),
    primaryVersion: k.primaryVersion,
    minDecryptionVersion: k.minDecryptionVersion,
    rotationPeriodSeconds: seconds(k.rotationPeriod),
    nextRotationTime: iso(k.nextRotationTime),
    deletionTime: iso(k.deletionTime),
    deletionProtection: k.deletionProtection,
    createTime: iso(k.createTime),
    rotateTime: iso(k.rotateTime),
    updateTime: iso(k.updateTime),
    creatorUid: k.creatorUid ?? null,
    ...(withVersions ? { versions: k.versions.map(versionJson) } : {}),
  };
}

function versionJson(v: KeyVersion): Record<string, unknown> {
  return { version: v.version, state: named(VERSION_STATES, v.state), createTime: iso(v.createTime), encryptionCount: count(v.encryptionCount), encryptionLimit: count(v.encryptionLimit) };
}

/** `key list`: name, purpose, suite, state, primary version, origin; aligned columns. */
export function keyTable(keys: Key[]): string {
  const rows = [['NAME', 'PURPOSE', 'SUITE', 'STATE', 'PRIMARY', 'ORIGIN']];
  for (const k of keys) {
    const j = keyJson(k, false);
    rows.push([k.name, String(j.purpose), String(j.suite), String(j.state), String(k.primaryVersion), String(j.origin)]);
  }
  return table(rows);
}

/** `key show`: every field, then the versions with their encryption counts. */
export function keyText(k: Key): string {
  const j = keyJson(k);
  // Rounded: seconds times 1000 is not always whole (4.096002 s gave "4096002.0000000005ms").
  const period = j.rotationPeriodSeconds === null ? 'none' : `${formatDuration(Math.round(Number(j.rotationPeriodSeconds) * 1000))} (next ${j.nextRotationTime ?? '-'})`;
  const fields: [string, unknown][] = [
    ['name', k.name],
    ['id', k.id],
    ['purpose', j.purpose],
    ['suite', j.suite],
    ['origin', j.origin === 'generated' ? 'generated in the kernel' : j.origin],
    ['state', j.state],
    ['primary version', k.primaryVersion],
    ['min decryption version', k.minDecryptionVersion],
    ['rotation period', period],
    ['deletion time', j.deletionTime ?? '-'],
    ['deletion protection', k.deletionProtection ? 'on' : 'off'],
    ['created', j.createTime ?? '-'],
    // Unset for keys saved before the daemon recorded creators.
    ['created by', k.creatorUid === undefined ? 'unknown' : `uid ${k.creatorUid}`],
    ['rotated', j.rotateTime ?? 'never'],
    ['updated', j.updateTime ?? '-'],
  ];
  const out = fields.map(([name, value]) => `${name.padEnd(24)}${String(value)}`);
  const rows = [['VERSION', 'STATE', 'CREATED', 'ENCRYPTIONS']];
  for (const v of k.versions) {
    const limit = v.encryptionLimit > 0n ? ` / ${v.encryptionLimit}` : '';
    rows.push([String(v.version), named(VERSION_STATES, v.state), iso(v.createTime) ?? '-', `${v.encryptionCount}${limit}`]);
  }
  return `${out.join('\n')}\n\n${table(rows)}`;
}

export function statusJson(s: GetStatusResponse, socketPath: string): Record<string, unknown> {
  const suiteOrNull = (v: number) => (v === 0 ? null : or(suiteName(v), v));
  return {
    socket: socketPath,
    daemonVersion: s.daemonVersion,
    pid: s.pid,
    startTime: iso(s.startTime),
    kernelRelease: s.kernelRelease,
    afAlgRestricted: s.afAlgRestricted,
    defaultAeadSuite: suiteOrNull(s.defaultAeadSuite),
    defaultMacSuite: suiteOrNull(s.defaultMacSuite),
    keyCount: s.keyCount,
    suites: s.suites.map((x) => ({ suite: or(suiteName(x.suite), x.suite), availability: named(AVAILABILITY, x.availability), driver: x.driver, detail: x.detail })),
    hashAlgorithms: s.hashAlgorithms.map((x) => ({ algorithm: or(hashAlgorithmName(x.algorithm), x.algorithm), availability: named(AVAILABILITY, x.availability), driver: x.driver, detail: x.detail })),
    limits: s.limits ? limitsJson(s.limits) : null,
    usage: s.usage ? usageJson(s.usage) : null,
    auditFailure: s.auditFailure || null,
    afAlgRestrictChanged: s.afAlgRestrictChanged || null,
  };
}

function usageJson(u: Usage) {
  return {
    connections: u.connections,
    bufferedBytes: Number(u.bufferedBytes),
    hashStreams: u.hashStreams,
    callerConnections: u.callerConnections,
    callerBufferedBytes: Number(u.callerBufferedBytes),
    callerHashStreams: u.callerHashStreams,
    calls: u.calls,
    callerCalls: u.callerCalls,
    keys: u.keys,
    keyVersions: u.keyVersions,
    callerKeys: u.callerKeys,
    callerKeyVersions: u.callerKeyVersions,
  };
}

function limitsJson(l: Limits): Record<string, unknown> {
  return {
    maxPayloadBytes: l.maxPayloadBytes,
    maxAssociatedDataBytes: l.maxAssociatedDataBytes,
    maxStreamChunkBytes: l.maxStreamChunkBytes,
    maxBatchItems: l.maxBatchItems,
    maxSessionInFlight: l.maxSessionInFlight,
    maxMessageBytes: l.maxMessageBytes,
    minRotationPeriodSeconds: seconds(l.minRotationPeriod),
    minDeletionWaitingPeriodSeconds: seconds(l.minDeletionWaitingPeriod),
    encryptionsPerVersion: Number(l.encryptionsPerVersion),
    maxSessionBufferedBytes: l.maxSessionBufferedBytes,
    maxBufferedBytes: Number(l.maxBufferedBytes),
    maxBufferedBytesPerCaller: Number(l.maxBufferedBytesPerCaller),
    maxConnectionsPerCaller: l.maxConnectionsPerCaller,
    maxHashStreamsPerCaller: l.maxHashStreamsPerCaller,
    maxCalls: l.maxCalls,
    maxCallsPerCaller: l.maxCallsPerCaller,
    maxKeys: l.maxKeys,
    maxKeysPerCaller: l.maxKeysPerCaller,
    maxVersionsPerKey: l.maxVersionsPerKey,
    maxKeyVersions: l.maxKeyVersions,
    maxKeyVersionsPerCaller: l.maxKeyVersionsPerCaller,
    maxConcurrentStreamsPerConnection: l.maxConcurrentStreamsPerConnection,
    maxConnections: l.maxConnections,
    connectionIdleTimeoutSeconds: seconds(l.connectionIdleTimeout),
    connectionMaxAgeSeconds: seconds(l.connectionMaxAge),
    connectionMaxAgeGraceSeconds: seconds(l.connectionMaxAgeGrace),
    maxTransforms: l.maxTransforms,
    maxOpSockets: l.maxOpSockets,
    maxQueuedRequests: l.maxQueuedRequests,
    maxQueuedRequestsPerCaller: l.maxQueuedRequestsPerCaller,
  };
}

export function statusText(s: GetStatusResponse, socketPath: string): string {
  const j = statusJson(s, socketPath);
  const l = j.limits as ReturnType<typeof limitsJson> | null;
  const dur = (sec: unknown) => (typeof sec === 'number' ? formatDuration(Math.round(sec * 1000)) : '-');
  const never = (sec: unknown) => (sec === 0 || sec === null ? 'never' : dur(sec));
  const lines = [
    `daemon      ringfenced ${s.daemonVersion}, pid ${s.pid}, started ${j.startTime ?? '-'}`,
    `socket      ${socketPath}`,
    // Not "af_alg_restrict=0": kernels before 7.3 have no such sysctl (review by helper-119).
    `kernel      ${s.kernelRelease}, AF_ALG ${s.afAlgRestricted ? 'restricted (af_alg_restrict)' : 'not restricted'}`,
    ...(s.afAlgRestrictChanged
      ? [`            af_alg_restrict is ${s.afAlgRestrictChanged} now, changed since the daemon started: the line above, the defaults and the suites are from its start; restart ringfenced to follow`]
      : []),
    `defaults    aead ${j.defaultAeadSuite ?? 'none available'}, mac ${j.defaultMacSuite ?? 'none available'}`,
    `keys        ${s.keyCount}`,
  ];
  if (s.auditFailure) lines.push(`audit       cannot be written (${s.auditFailure}): the daemon refuses every operation until it can; see its stderr`);
  const u = j.usage as ReturnType<typeof usageJson> | null;
  if (u) {
    const n = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`;
    lines.push(`in use      ${n(u.connections, 'connection')} (${u.callerConnections} yours), ${u.bufferedBytes} B buffered (${u.callerBufferedBytes} B yours), ${n(u.hashStreams, 'hash stream')} (${u.callerHashStreams} yours), ${n(u.calls, 'call')} (${u.callerCalls} yours)`);
    lines.push(`            ${n(u.keys, 'key')} (${u.callerKeys} yours), ${n(u.keyVersions, 'key version')} (${u.callerKeyVersions} yours)`);
  }
  if (l) {
    lines.push(
      `limits      payload ${l.maxPayloadBytes} B, associated data ${l.maxAssociatedDataBytes} B, stream chunk ${l.maxStreamChunkBytes} B, message ${l.maxMessageBytes} B`,
      `            batch ${l.maxBatchItems} items, session ${l.maxSessionInFlight} in flight and ${l.maxSessionBufferedBytes} B held, rotation >= ${dur(l.minRotationPeriodSeconds)}, deletion wait >= ${dur(l.minDeletionWaitingPeriodSeconds)}`,
      `            ${l.maxKeys} keys (${l.maxKeysPerCaller} per caller), ${l.maxVersionsPerKey} versions per key, ${l.maxKeyVersions} key versions in all (${l.maxKeyVersionsPerCaller} per caller)`,
      `            ${l.encryptionsPerVersion} encryptions per key version, ${l.maxBufferedBytes} B buffered by all sessions and streams (${l.maxBufferedBytesPerCaller} B per caller)`,
      `            ${l.maxConnections} connections (${l.maxConnectionsPerCaller} per caller), ${l.maxConcurrentStreamsPerConnection} calls each, ${l.maxCalls} calls in all (${l.maxCallsPerCaller} per caller), ${l.maxHashStreamsPerCaller} hash streams per caller, idle ${never(l.connectionIdleTimeoutSeconds)}, max age ${never(l.connectionMaxAgeSeconds)} (grace ${dur(l.connectionMaxAgeGraceSeconds)})`,
      `            ${l.maxTransforms} kernel transforms, ${l.maxOpSockets} kernel sockets each, ${l.maxQueuedRequests} requests queued per key (${l.maxQueuedRequestsPerCaller} per caller)`,
    );
  }
  const rows = [['SUITE / HASH', 'AVAILABILITY', 'DRIVER OR DETAIL']];
  for (const x of [...(j.suites as Avail[]).map((a) => ({ ...a, name: a.suite })), ...(j.hashAlgorithms as Avail[]).map((a) => ({ ...a, name: a.algorithm }))]) {
    rows.push([String(x.name), x.availability, x.driver || x.detail || '-']);
  }
  return `${lines.join('\n')}\n\n${table(rows)}`;
}
type Avail = { suite?: string; algorithm?: string; availability: string; driver: string; detail: string };

/** Left-aligned columns two spaces apart; the last column is not padded. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
