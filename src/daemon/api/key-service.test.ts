import { createHmac, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it, vi } from 'vitest';
import { KeyView } from '../../gen/ringfence/v1/key_pb.js';
import { CreateKeyRequestSchema, ImportKeyRequestSchema, KeyService, ListKeysResponseSchema, RotateKeyRequestSchema, type ListKeysResponse } from '../../gen/ringfence/v1/key_service_pb.js';
import { decodeStatusDetails } from '../../rpc/error-details.js';
import { MaterialFingerprints } from '../keys/fingerprints.js';
import { KeyManager, type KeyPolicyLimits } from '../keys/key-manager.js';
import { EMPTY_STATE } from '../keys/model.js';
import { ApiError, ErrorReason } from './errors.js';
import { durationMs, keyServiceHandlers } from './key-service.js';
import { permissionDenied } from '../policy/access.js';

describe('durationMs (rotation periods and deletion waits from the wire)', () => {
  const d = (seconds: bigint, nanos: number) => create(DurationSchema, { seconds, nanos });

  it('converts to milliseconds, rounding a fraction up so that only zero is zero ("off")', () => {
    expect(durationMs('rotation_period', undefined)).toBeUndefined();
    expect(durationMs('rotation_period', d(0n, 0))).toBe(0);
    expect(durationMs('rotation_period', d(3600n, 0))).toBe(3_600_000);
    expect(durationMs('rotation_period', d(0n, 500_000))).toBe(1);
    expect(durationMs('rotation_period', d(1n, 1))).toBe(1001);
  });

  it('refuses negative, malformed and absurd durations with INVALID_FIELD', () => {
    for (const bad of [d(-1n, 0), d(0n, -1), d(0n, 1_000_000_000), d(10n ** 12n + 1n, 0)]) {
      expect(() => durationMs('rotation_period', bad)).toThrow(ApiError);
    }
  });
});

/** KeyService's handlers over a KeyManager with stand-in kernel keys (no kernel is needed to shape replies). */
async function service(maxMessageBytes: number, opts: { deny?: boolean; grant?: (op: string, key?: string) => boolean; limits?: Partial<KeyPolicyLimits> } = {}) {
  let serial = 1;
  const stand = (suite: { keyBytes: number[] }) => {
    const serials = suite.keyBytes.map(() => serial++);
    return { serials, blobs: serials.map(() => randomBytes(8).toString('hex')) };
  };
  const material = {
    canSeal: true,
    generate: (_id: string, _v: number, suite: { keyBytes: number[] }) => stand(suite),
    import: async (_id: string, _v: number, suite: { keyBytes: number[] }) => stand(suite),
    masterCheck: async () => 'check',
    verifyMasterCheck: async () => true,
    destroy: () => {},
  };
  // The kernel's HMAC under this run's fingerprint key, stood in for by node:crypto's.
  const fingerprintKey = randomBytes(32);
  const kernel = {
    keystore: { importRaw: (_d: string, b: Buffer) => (b.fill(0), 9999), destroy: () => {} },
    engine: { digest: async (_a: unknown, _s: number, _n: number, parts: Buffer[]) => createHmac('sha256', fingerprintKey).update(Buffer.concat(parts)).digest(), forgetKey: () => {} },
  };
  const fingerprints = new MaterialFingerprints(kernel.keystore as never, kernel.engine as never);
  const keys = new KeyManager({ material: material as never, fingerprints, persist: async () => {}, suiteStatus: () => 'available', limits: { minRotationPeriodMs: 1, minDeletionWaitingPeriodMs: 1, ...opts.limits }, log: () => {} });
  await keys.open(EMPTY_STATE);
  const deps = {
    audit: vi.fn(),
    log: { error: vi.fn(), warn: vi.fn(), info: vi.fn() },
    access: {
      forCall: () => {
        const principal = { uid: 1000, gid: 1000, pid: 1, groups: [] };
        if (opts.grant) {
          // Read at each check, so a test can change what the caller may do between calls.
          const grant = (op: string, key?: string) => opts.grant!(op, key);
          return { principal, authorize: (op: string, key?: string) => { if (!grant(op, key)) throw permissionDenied(principal, op as never, key); }, allows: grant, mayEverDo: (op: string) => grant(op, 'a') || grant(op, 'b') || grant(op, 'k') };
        }
        return opts.deny
          ? { principal, authorize: (op: string, key?: string) => { throw permissionDenied(principal, op as never, key); }, allows: () => false, mayEverDo: () => false }
          : { principal, authorize: () => {}, allows: () => true, mayEverDo: () => true };
      },
    },
  };
  const handlers = keyServiceHandlers(keys, deps as never, maxMessageBytes) as unknown as Record<string, (call: unknown, cb: (e: grpc.StatusObject | null, r?: unknown) => void) => void>;
  const call = <R>(rpc: string, request: unknown) =>
    new Promise<R>((resolve, reject) =>
      handlers[rpc]!({ request, getPeer: () => '', metadata: new grpc.Metadata() }, (e, r) => {
        if (!e) return resolve(r as R);
        const details = decodeStatusDetails(e.metadata!);
        reject(Object.assign(new Error(e.details), { code: e.code, reason: details?.reason, metadata: details?.metadata }));
      }),
    );
  return { keys, call };
}

const KiB = 1024;

describe('KeyService replies fit maxMessageBytes (found by review: grpc-js refused them after an OK audit)', () => {
  it('a ListKeys page ends early instead of outgrowing the reply, and paging still returns every key once, in order', async () => {
    const { keys, call } = await service(64 * KiB);
    const names = Array.from({ length: 40 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    for (const name of names) {
      await keys.create({ name });
      for (let v = 0; v < 60; v++) await keys.rotate(name);
    }
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await call<ListKeysResponse>('listKeys', { pageSize: 1000, pageToken, view: KeyView.FULL });
      expect(toBinary(ListKeysResponseSchema, create(ListKeysResponseSchema, page)).length).toBeLessThanOrEqual(64 * KiB);
      expect(page.keys.length).toBeGreaterThan(0);
      seen.push(...page.keys.map((k) => k.name));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(seen).toEqual(names);
    expect(pages).toBeGreaterThan(1);
    // The basic view of all 40 fits one page.
    expect((await call<ListKeysResponse>('listKeys', { pageSize: 1000, pageToken: '', view: KeyView.BASIC })).nextPageToken).toBe('');
  });

  it('a key too large for one reply: GetKey of the full view is RESOURCE_EXHAUSTED saying what to do; a change answers OK with the basic view', { timeout: 60_000 }, async () => {
    const { keys, call } = await service(64 * KiB);
    await keys.create({ name: 'old' });
    for (let v = 0; v < 3000; v++) await keys.rotate('old');
    const get = await call('getKey', { name: 'old', view: KeyView.FULL }).catch((e: unknown) => e);
    expect(get).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, metadata: { field: 'key', key_name: 'old' } });
    expect((get as Error).message).toMatch(/^key "old" with its 3001 versions is \d+ bytes in the full view, more than the largest reply \(64512 bytes\): read it with the basic view/);
    const rotate = await call<{ key: { primaryVersion: number; versions: unknown[] } }>('rotateKey', { name: 'old', material: new Uint8Array(0) });
    expect(rotate.key.primaryVersion).toBe(3002);
    expect(rotate.key.versions).toEqual([]);
    expect(keys.get('old').versions).toHaveLength(3002);
    // Listing the full view: that key comes in the basic view, and the keys after it as asked.
    await keys.create({ name: 'small' });
    const listed = await call<ListKeysResponse>('listKeys', { pageSize: 10, pageToken: '', view: KeyView.FULL });
    expect(listed.keys.map((k) => [k.name, k.versions.length])).toEqual([['old', 0], ['small', 1]]);
    expect(listed.nextPageToken).toBe('');
    expect(await call<{ key: { primaryVersion: number } }>('getKey', { name: 'old', view: KeyView.BASIC })).toMatchObject({ key: { primaryVersion: 3002 } });
  });
});

describe('ListKeys page tokens', () => {
  it('refuses a token that names no possible key (found by review: "~" answered an empty page)', async () => {
    const { keys, call } = await service(4096 * KiB);
    await keys.create({ name: 'a' });
    for (const after of [Buffer.from('~'), Buffer.from([0xff, 0xfe]), Buffer.from('')]) {
      const token = `k1.${after.toString('base64url')}`;
      await expect(call('listKeys', { pageSize: 10, pageToken: token })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, reason: ErrorReason.INVALID_PAGE_TOKEN });
    }
    // A token naming a key deleted since is fine: the next page starts after that name.
    const page = await call<ListKeysResponse>('listKeys', { pageSize: 10, pageToken: `k1.${Buffer.from('0-gone').toString('base64url')}` });
    expect(page.keys.map((k) => k.name)).toEqual(['a']);
  });
});

describe('KeyView', () => {
  it('refuses a view outside the enum (found by review: any number but BASIC gave the full view); unset is each RPC\'s default', async () => {
    const { keys, call } = await service(4096 * KiB);
    await keys.create({ name: 'k' });
    for (const [rpc, init] of [['getKey', { name: 'k' }], ['listKeys', { pageSize: 10, pageToken: '' }]] as const) {
      for (const view of [99, -1, 3]) {
        await expect(call(rpc, { ...init, view })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, reason: ErrorReason.INVALID_FIELD, metadata: { field: 'view' } });
      }
    }
    expect((await call<{ key: { versions: unknown[] } }>('getKey', { name: 'k', view: KeyView.UNSPECIFIED })).key.versions).toHaveLength(1);
    expect((await call<ListKeysResponse>('listKeys', { pageSize: 10, pageToken: '', view: KeyView.UNSPECIFIED })).keys[0]!.versions).toHaveLength(0);
  });
});

describe('ImportKey and RotateKey wipe the material in the request, whatever happens', () => {
  const secret = () => Buffer.from(randomBytes(32).map((b) => b | 1)); // no zero byte: a wipe shows
  const wiped = (b: Uint8Array) => b.every((x) => x === 0);

  it('after an import, a refused import (policy, bad name, wrong length) and a refused rotation', async () => {
    const { call } = await service(256 * KiB);
    const ok = secret();
    const request = (rpc: string, init: Record<string, unknown>) => create(rpc === 'importKey' ? ImportKeyRequestSchema : RotateKeyRequestSchema, init);
    await call('importKey', request('importKey', { name: 'imported', material: ok }));
    expect(wiped(ok)).toBe(true);

    const cases: [string, Record<string, unknown>][] = [
      ['importKey', { name: 'bad name!' }],
      ['importKey', { name: 'short', material: secret().subarray(0, 7) }],
      ['rotateKey', { name: 'no-such-key' }],
    ];
    for (const [rpc, req] of cases) {
      const material = (req.material as Buffer | undefined) ?? secret();
      await expect(call(rpc, request(rpc, { ...req, material }))).rejects.toThrow();
      expect(wiped(material), `${rpc} ${String(req.name)}`).toBe(true);
    }

    const denied = await service(256 * KiB, { deny: true });
    for (const rpc of ['importKey', 'rotateKey']) {
      const material = secret();
      await expect(denied.call(rpc, request(rpc, { name: 'imported', material }))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      expect(wiped(material), rpc).toBe(true);
    }
  });
});

describe('imported material is held once (two versions sharing it would share one nonce space)', () => {
  const request = (rpc: string, init: Record<string, unknown>) => create(rpc === 'importKey' ? ImportKeyRequestSchema : RotateKeyRequestSchema, init);
  const refused = { code: grpc.status.INVALID_ARGUMENT, reason: ErrorReason.KEY_MATERIAL_INVALID, metadata: { field: 'material' } };

  it('refuses material another key holds, without naming that key; the refused key is not made', async () => {
    const { call } = await service(256 * KiB);
    const m = randomBytes(32);
    await call('importKey', request('importKey', { name: 'first', material: Buffer.from(m) }));
    const copy = Buffer.from(m);
    const err = await call('importKey', request('importKey', { name: 'second', material: copy })).catch((e: Error) => e);
    expect(err).toMatchObject({ ...refused, message: expect.stringContaining('another key in this daemon') });
    expect((err as Error).message).not.toContain('first');
    expect(copy.every((b) => b === 0)).toBe(true);
    await expect(call('getKey', { name: 'second' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await call('importKey', request('importKey', { name: 'second', material: randomBytes(32) }));
  });

  it('refuses a rotation to material one of the key\'s versions holds, naming the version', async () => {
    const { call } = await service(256 * KiB);
    const [v1, v2] = [randomBytes(32), randomBytes(32)];
    await call('importKey', request('importKey', { name: 'k', material: Buffer.from(v1) }));
    await expect(call('rotateKey', request('rotateKey', { name: 'k', material: Buffer.from(v1) }))).rejects.toMatchObject({ ...refused, message: expect.stringContaining('version 1 of key "k"') });
    await call('rotateKey', request('rotateKey', { name: 'k', material: Buffer.from(v2) }));
    await expect(call('rotateKey', request('rotateKey', { name: 'k', material: Buffer.from(v2) }))).rejects.toMatchObject({ ...refused, message: expect.stringContaining('version 2 of key "k"') });
    const got = await call<{ key: { versions: unknown[] } }>('getKey', { name: 'k' });
    expect(got.key.versions).toHaveLength(2);
  });

  it('compares each kernel key\'s worth: the MAC half of an encrypt-then-MAC key is refused as a key of its own', async () => {
    const { call } = await service(256 * KiB);
    const [cipherKey, macKey] = [randomBytes(32), randomBytes(32)];
    await call('importKey', request('importKey', { name: 'etm', suite: 4, material: Buffer.concat([cipherKey, macKey]) }));
    await expect(call('importKey', request('importKey', { name: 'mac', purpose: 2, suite: 5, material: Buffer.from(macKey) }))).rejects.toMatchObject(refused);
    await expect(call('importKey', request('importKey', { name: 'gcm', suite: 1, material: Buffer.from(cipherKey) }))).rejects.toMatchObject(refused);
  });
});

describe('an imported key at its encryption limit mid-stream', () => {
  it('says to rotate it with new material, not that a new stream will use a rotated version (it has none: a new stream is refused too)', async () => {
    const { keys } = await service(4096 * KiB, { limits: { encryptionLimit: 3, reservationBlock: 1 } });
    await keys.import({ name: 'imp', material: randomBytes(32) });
    const stream = await keys.forEncrypt('imp');
    await keys.countEncryptions(stream, 2);
    const mid = await keys.countEncryptions(stream, 1).catch((e: unknown) => e);
    expect(mid).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: ErrorReason.ENCRYPTION_LIMIT_REACHED });
    expect((mid as Error).message).toBe('key "imp" version 1 reached its limit of 3 encryptions mid-stream; rotate it with new material, then start a new stream');
    await expect(keys.forEncrypt('imp')).rejects.toMatchObject({ reason: ErrorReason.ENCRYPTION_LIMIT_REACHED, message: expect.stringMatching(/rotate it with new material$/) });
    // A generated key's new stream does move to a new version.
    await keys.create({ name: 'gen' });
    const g = await keys.forEncrypt('gen');
    await keys.countEncryptions(g, 2);
    await expect(keys.countEncryptions(g, 1)).rejects.toMatchObject({ message: expect.stringMatching(/mid-stream; start a new stream \(it will use the rotated version\)$/) });
    expect((await keys.forEncrypt('gen')).version).toBe(2);
  });
});

describe('KeyService asks the policy for the operation each RPC is (found by review: no host test noticed a swapped or missing check)', () => {
  it('each RPC is refused without its operation on the key, and not refused with only that operation', async () => {
    const opts: { grant: (op: string, key?: string) => boolean } = { grant: () => true };
    const svc = await service(256 * KiB, opts);
    const call = (rpc: string, init: Record<string, unknown>) => svc.call(rpc, create(KeyService.method[rpc as keyof typeof KeyService.method].input, init as never));
    await call('createKey', { name: 'k' });
    await call('scheduleKeyDeletion', { name: 'k', waitingPeriod: create(DurationSchema, { seconds: 86_400n }) });
    await call('cancelKeyDeletion', { name: 'k' });
    const cases: [string, string, Record<string, unknown>][] = [
      ['createKey', 'create', { name: 'k2' }],
      ['importKey', 'import', { name: 'k3', material: randomBytes(32) }],
      ['getKey', 'read', { name: 'k' }],
      ['rotateKey', 'rotate', { name: 'k' }],
      ['updateKey', 'update', { name: 'k', deletionProtection: true }],
      ['disableKey', 'disable', { name: 'k' }],
      ['enableKey', 'enable', { name: 'k' }],
      ['scheduleKeyDeletion', 'delete', { name: 'k', waitingPeriod: create(DurationSchema, { seconds: 86_400n }) }],
      ['cancelKeyDeletion', 'delete', { name: 'k' }],
    ];
    for (const [rpc, op, request] of cases) {
      opts.grant = (o) => o !== op;
      await expect(call(rpc, request), `${rpc} without ${op}`).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      opts.grant = (o) => o === op;
      const outcome = await call(rpc, request).then(() => 'OK', (e: { code: number }) => grpc.status[e.code]);
      expect(outcome, `${rpc} with only ${op}`).not.toBe('PERMISSION_DENIED');
    }
  });

  it('ListKeys lists only the keys the caller may read, and refuses a caller who may read none', async () => {
    const opts: { grant: (op: string, key?: string) => boolean } = { grant: () => true };
    const { call, keys } = await service(256 * KiB, opts);
    for (const name of ['a', 'b']) await keys.create({ name });
    opts.grant = (op, key) => op === 'read' && key === 'a';
    const page = await call<ListKeysResponse>('listKeys', { pageSize: 10, pageToken: '', view: KeyView.BASIC });
    expect(page.keys.map((k) => k.name)).toEqual(['a']);
    opts.grant = (op) => op !== 'read';
    await expect(call('listKeys', { pageSize: 10, pageToken: '', view: KeyView.BASIC })).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  });
});

describe('KeyService: caps on keys and versions', () => {
  it("CreateKey and ImportKey charge the key to the caller's uid: past maxKeysPerCaller, RESOURCE_EXHAUSTED with KEY_LIMIT_REACHED naming the limit", async () => {
    const { keys, call } = await service(64 * KiB, { limits: { maxKeysPerCaller: 2, maxKeys: 10 } });
    await call('createKey', create(CreateKeyRequestSchema, { name: 'a' }));
    await call('importKey', create(ImportKeyRequestSchema, { name: 'b', material: randomBytes(32) }));
    expect([keys.get('a').creatorUid, keys.get('b').creatorUid]).toEqual([1000, 1000]);
    const err = await call('createKey', create(CreateKeyRequestSchema, { name: 'c' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: ErrorReason.KEY_LIMIT_REACHED, metadata: { limit: 'keys_per_caller', limit_value: '2', key_name: 'c', uid: '1000' } });
    expect((err as Error).message).toMatch(/^uid 1000 already created 2 keys, its limit \(maxKeysPerCaller 2;.*raise limits\.maxKeysPerCaller/);
    // A key made without a caller (none on the wire) counts toward no one's part.
    await keys.create({ name: 'internal' });
    expect(keys.get('internal').creatorUid).toBeUndefined();
  });

  it('RotateKey past maxVersionsPerKey: RESOURCE_EXHAUSTED with KEY_LIMIT_REACHED, and the key is unchanged', async () => {
    const { keys, call } = await service(64 * KiB, { limits: { maxVersionsPerKey: 2 } });
    await call('createKey', create(CreateKeyRequestSchema, { name: 'k' }));
    await call('rotateKey', create(RotateKeyRequestSchema, { name: 'k' }));
    const err = await call('rotateKey', create(RotateKeyRequestSchema, { name: 'k' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: ErrorReason.KEY_LIMIT_REACHED, metadata: { limit: 'versions_per_key', limit_value: '2', key_name: 'k' } });
    expect(keys.get('k').versions).toHaveLength(2);
  });

  it("RotateKey charges the new version to the caller rotating, not to the key's creator: past its own maxKeyVersionsPerCaller, refused naming only its own uid", async () => {
    const { keys, call } = await service(64 * KiB, { limits: { maxKeyVersionsPerCaller: 2, maxKeyVersions: 20 } });
    await keys.create({ name: 'theirs', creatorUid: 2000 }); // another caller's key, rotate granted to uid 1000
    await call('rotateKey', create(RotateKeyRequestSchema, { name: 'theirs' }));
    await call('rotateKey', create(RotateKeyRequestSchema, { name: 'theirs' }));
    expect(keys.get('theirs').versions.map((v) => v.creatorUid)).toEqual([undefined, 1000, 1000]);
    const err = await call('rotateKey', create(RotateKeyRequestSchema, { name: 'theirs' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, reason: ErrorReason.KEY_LIMIT_REACHED, metadata: { limit: 'key_versions_per_caller', limit_value: '2', key_name: 'theirs', uid: '1000' } });
    expect((err as Error).message).toMatch(/^uid 1000 already made 2 key versions/);
    expect((err as Error).message).not.toContain('2000');
    expect(keys.get('theirs').versions).toHaveLength(3);
  });

  it("the Key message names the key's creator: the caller of CreateKey or ImportKey, root as 0, and none for a key of no recorded creator", async () => {
    const { keys, call } = await service(64 * KiB);
    type Reply = { key: { creatorUid?: number } };
    expect((await call<Reply>('createKey', create(CreateKeyRequestSchema, { name: 'mine' }))).key.creatorUid).toBe(1000);
    expect((await call<Reply>('importKey', create(ImportKeyRequestSchema, { name: 'imported', material: randomBytes(32) }))).key.creatorUid).toBe(1000);
    await keys.create({ name: 'roots', creatorUid: 0 });
    await keys.create({ name: 'old' }); // as a key saved before creators were recorded
    expect((await call<Reply>('getKey', { name: 'roots', view: KeyView.BASIC })).key.creatorUid).toBe(0);
    const old = await call<Reply>('getKey', { name: 'old', view: KeyView.FULL });
    expect(old.key.creatorUid).toBeUndefined();
    const listed = await call<ListKeysResponse>('listKeys', { pageSize: 10, pageToken: '', view: KeyView.BASIC });
    expect(listed.keys.map((k) => [k.name, k.creatorUid])).toEqual([['imported', 1000], ['mine', 1000], ['old', undefined], ['roots', 0]]);
  });
});
