/** GetStatus' Usage (the key counts the caps check, daemon-wide and the calling uid's own only) and Limits. */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import type { GetStatusResponse } from '../../gen/ringfence/v1/status_service_pb.js';
import { DEFAULT_LIMITS, type Limits } from '../config.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import { statusJson, statusText } from '../../client/commands/format.js';
import { statusServiceHandlers } from './status-service.js';

/** GetStatus over the stand-in's keys ("k", "m": no recorded creator), asked as `uid` (undefined: unidentified). */
async function statusService(auditFailing?: () => string | undefined, restrictNow?: () => { value: number | null; unreadable?: string }, limits: Partial<Limits> = {}) {
  const { keys } = await standInContext();
  let uid: number | undefined;
  const deps = {
    audit: vi.fn(),
    log: { error: vi.fn(), warn: vi.fn(), info: vi.fn() },
    access: { forCall: () => ({ principal: uid === undefined ? undefined : { uid, gid: uid, pid: 1, groups: [] } }) },
  };
  const report = { kernel: { release: '6.12' }, restrict: { value: null }, suites: [], defaultAeadSuite: null, defaultMacSuite: null };
  // The daemon's own counts (daemon.ts): GetStatus adds the key counts beside them.
  const usage = () => ({ calls: 5, callerCalls: 2 });
  const handlers = statusServiceHandlers(keys, { version: '0', startTime: 0, report: report as never, limits: { ...DEFAULT_LIMITS, ...limits }, usage, ...(auditFailing ? { auditFailing } : {}), readRestrict: restrictNow ?? (() => ({ value: null })) }, deps as never) as unknown as Record<string, (call: unknown, cb: (e: grpc.StatusObject | null, r?: GetStatusResponse) => void) => void>;
  const statusOf = (asUid: number | undefined) => {
    uid = asUid;
    return new Promise<GetStatusResponse>((resolve, reject) =>
      handlers.getStatus!({ request: {}, getPeer: () => '', metadata: new grpc.Metadata() }, (e, r) => (e ? reject(new Error(e.details)) : resolve(r!))),
    );
  };
  const usageOf = async (asUid: number | undefined) => (await statusOf(asUid)).usage;
  return { keys, usageOf, statusOf };
}

describe('GetStatus Usage: key counts', () => {
  it('every caller sees the daemon-wide keys and versions, and only its own keys and the versions it made', async () => {
    const { keys, usageOf } = await statusService();
    await keys.create({ name: 'a1', creatorUid: 1001 });
    await keys.create({ name: 'a2', creatorUid: 1001 });
    await keys.create({ name: 'b1', creatorUid: 1002 });
    await keys.create({ name: 'r1', creatorUid: 0 });
    await keys.rotate('a1', undefined, 1002); // charged to the caller rotating, not the key's creator
    await keys.rotate('k', undefined, 1001);
    await keys.rotate('b1'); // no caller (on schedule): charged to the creator
    await keys.scheduleDeletion('a2', undefined); // counts until deleted
    // keys: k, m, a1, a2, b1, r1; versions: k 2, m 1, a1 2, a2 1, b1 2, r1 1.
    const all = { keys: 6, keyVersions: 9 };
    expect(await usageOf(1001)).toMatchObject({ ...all, callerKeys: 2, callerKeyVersions: 3, calls: 5, callerCalls: 2 });
    expect(await usageOf(1002)).toMatchObject({ ...all, callerKeys: 1, callerKeyVersions: 3 });
    // An administrator is held to no per-caller cap, but is shown what it made all the same.
    expect(await usageOf(0)).toMatchObject({ ...all, callerKeys: 1, callerKeyVersions: 1 });
    expect(await usageOf(1003)).toMatchObject({ ...all, callerKeys: 0, callerKeyVersions: 0 });
    // Keys of no recorded creator ("k", "m") are no caller's, not an unidentified caller's.
    expect(await usageOf(undefined)).toMatchObject({ ...all, callerKeys: 0, callerKeyVersions: 0 });
  });

});

describe('GetStatus Limits', () => {
  it('reports the engine limits set in the config file, and `ringfence status` prints them', async () => {
    const { statusOf } = await statusService(undefined, undefined, { maxTransforms: 100, maxOpSockets: 3, maxQueuedRequests: 40, maxQueuedRequestsPerCaller: 7 });
    const s = await statusOf(1001);
    expect(s.limits).toMatchObject({ maxTransforms: 100, maxOpSockets: 3, maxQueuedRequests: 40, maxQueuedRequestsPerCaller: 7 });
    expect(statusJson(s, '/s').limits).toMatchObject({ maxTransforms: 100, maxOpSockets: 3, maxQueuedRequests: 40, maxQueuedRequestsPerCaller: 7 });
    expect(statusText(s, '/s')).toContain('\n            100 kernel transforms, 3 kernel sockets each, 40 requests queued per key (7 per caller)\n');
  });
});

describe('GetStatus while the audit trail cannot be written', () => {
  it('reports the errno, and `ringfence status` says what it means; nothing while it can', async () => {
    let failing: string | undefined = 'ENOSPC';
    const { statusOf } = await statusService(() => failing);
    const status = await statusOf(1001);
    expect(status.auditFailure).toBe('ENOSPC');
    expect(statusJson(status, '/s').auditFailure).toBe('ENOSPC');
    expect(statusText(status, '/s')).toContain('\naudit       cannot be written (ENOSPC): the daemon refuses every operation until it can; see its stderr\n');
    failing = undefined;
    const fine = await statusOf(1001);
    expect(fine.auditFailure).toBe('');
    expect(statusJson(fine, '/s').auditFailure).toBeNull();
    expect(statusText(fine, '/s')).not.toContain('audit');
  });
});

// Found by review (helper-179) in the 7.3 test VM: after `sysctl crypto.af_alg_restrict=1` the daemon
// went on saying "AF_ALG not restricted", with gcm available and the default.
describe('GetStatus after af_alg_restrict changed while the daemon runs', () => {
  it('says what the sysctl reads now and that a restart follows it; nothing while it reads as at start', async () => {
    let now: { value: number | null; unreadable?: string } = { value: 1 };
    const { statusOf } = await statusService(undefined, () => now); // started with no sysctl (value null)
    const changed = await statusOf(0);
    expect(changed.afAlgRestrictChanged).toBe('1');
    expect(statusJson(changed, '/s').afAlgRestrictChanged).toBe('1');
    expect(statusText(changed, '/s')).toContain('\nkernel      6.12, AF_ALG not restricted\n            af_alg_restrict is 1 now, changed since the daemon started: the line above, the defaults and the suites are from its start; restart ringfenced to follow\n');
    now = { value: null, unreadable: 'EACCES' };
    expect((await statusOf(0)).afAlgRestrictChanged).toBe('unreadable (EACCES)');
    now = { value: null };
    const same = await statusOf(0);
    expect(same.afAlgRestrictChanged).toBe('');
    expect(statusJson(same, '/s').afAlgRestrictChanged).toBeNull();
    expect(statusText(same, '/s')).not.toContain('af_alg_restrict is');
  });
});
