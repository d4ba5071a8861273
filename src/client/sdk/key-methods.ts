/** KeyService methods of RingfenceClient (kept apart from the cryptographic ones for size). */
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import type { Key, KeyPurpose, KeyView } from '../../gen/ringfence/v1/key_pb.js';
import { KeyService, type ListKeysResponse } from '../../gen/ringfence/v1/key_service_pb.js';
import type { Suite } from '../../gen/ringfence/v1/suite_pb.js';
import type { CallOptions } from './call-options.js';
import { RingfenceError } from './errors.js';
import { parseKeyPurpose, parseKeyView, parseSuite, type KeyPurposeName, type KeyViewName, type SuiteName } from './names.js';
import type { Transport } from './transport.js';
import { bytesOf, flagOf, nameOf, optionalName, uint32 } from './requests.js';

export interface CreateKeyOptions extends CallOptions {
  /** Default: the suite's purpose, else AEAD. */
  purpose?: KeyPurpose | KeyPurposeName;
  /** Default: the best suite for the purpose that the daemon's kernel allows. */
  suite?: Suite | SuiteName;
  /** Automatic rotation period; unset or 0: none. At least 1 hour by default, at most 100 years;
   * rounded to whole milliseconds. */
  rotationPeriodMs?: number;
  deletionProtection?: boolean;
}
export interface ImportKeyOptions extends CallOptions {
  purpose?: KeyPurpose | KeyPurposeName;
  /** Default: chosen from the purpose and the material's length. */
  suite?: Suite | SuiteName;
  deletionProtection?: boolean;
}
export interface GetKeyOptions extends CallOptions {
  /** Default 'full' (with versions). */
  view?: KeyView | KeyViewName;
}
export interface ListKeysOptions extends CallOptions {
  /** 0 or unset: 100; at most 1000. A page may hold fewer keys even when more follow. */
  pageSize?: number;
  pageToken?: string;
  /** Default 'basic' (no versions). */
  view?: KeyView | KeyViewName;
}
/** Only the fields given change. */
export interface UpdateKeyOptions extends CallOptions {
  minDecryptionVersion?: number;
  /** 0 turns time-based rotation off. As for createKey: at most 100 years, whole milliseconds. */
  rotationPeriodMs?: number;
  deletionProtection?: boolean;
}
export interface ScheduleKeyDeletionOptions extends CallOptions {
  /** Default 7 days (or the daemon's minimum, if longer); at least that minimum (1 day unless
   * configured), at most 365 days; rounded to whole milliseconds. */
  waitingPeriodMs?: number;
}

/** The longest durations the daemon takes (key_service.proto; it refuses longer ones). */
/** The longest periods the daemon takes (key_service.proto); the CLI names its options against these. */
export const MAX_ROTATION_PERIOD = { ms: 3_155_760_000_000, text: '100 years' } as const;
export const MAX_WAITING_PERIOD = { ms: 365 * 86_400_000, text: '365 days' } as const;

/**
 * A Duration of whole milliseconds (the daemon's own resolution). A fraction of a millisecond
 * (2.3 hours in ms is 8279999.999999999) failed to serialize as an INTERNAL error, and a value
 * beyond int64 seconds (1e25) threw a plain Error: rounded, and bounded by what the daemon takes,
 * as a RangeError naming the option (review by helper-144). A positive value under half a
 * millisecond is 1 ms, not 0, which would mean "no rotation" (the daemon rounds up for the same).
 */
function duration(field: string, ms: number | undefined, max: { ms: number; text: string }) {
  if (ms === undefined) return undefined;
  const whole = ms > 0 ? Math.max(1, Math.round(ms)) : 0;
  // ms itself, not whole: -0.3 must not round to 0 ("no rotation").
  if (!(ms >= 0 && whole <= max.ms)) throw new RangeError(`${field} must be a number of milliseconds from 0 to ${max.ms} (${max.text}), got ${ms}`);
  return durationFromMs(whole);
}

function int32(field: string, n: number | undefined): number | undefined {
  if (n !== undefined && (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff)) throw new RangeError(`${field} must be a 32-bit integer, got ${n}`);
  return n;
}

function keyOf(res: { key?: Key }): Key {
  if (!res.key) throw new RingfenceError({ code: grpc.status.INTERNAL, message: 'the daemon answered without the key' });
  return res.key;
}

const keyName = (name: unknown) => nameOf(name, 'the key name');

const enumOr = <E>(value: E | string | undefined, parse: (v: E | string) => E) => (value === undefined ? undefined : parse(value));

export class KeyMethods {
  constructor(protected readonly transport: Transport) {}

  async createKey(name: string, opts: CreateKeyOptions = {}): Promise<Key> {
    const request = {
      name: keyName(name),
      purpose: enumOr(opts.purpose, parseKeyPurpose),
      suite: enumOr(opts.suite, parseSuite),
      // 0 is none (unset); NaN or negative is refused, as updateKey refuses it (found by review).
      rotationPeriod: opts.rotationPeriodMs === 0 ? undefined : duration('rotationPeriodMs', opts.rotationPeriodMs, MAX_ROTATION_PERIOD),
      deletionProtection: flagOf(opts.deletionProtection, 'deletionProtection'),
    };
    return keyOf(await this.transport.unary(KeyService.method.createKey, request, opts));
  }

  /** `material` is the raw key (32 bytes; 64 for aes-256-ctr-hmac-sha256 and hmac-sha512; 48 for
   * hmac-sha384). Wipe your copy afterwards. */
  async importKey(name: string, material: Uint8Array, opts: ImportKeyOptions = {}): Promise<Key> {
    const request = {
      name: keyName(name),
      material: bytesOf(material, 'the key material'),
      purpose: enumOr(opts.purpose, parseKeyPurpose),
      suite: enumOr(opts.suite, parseSuite),
      deletionProtection: flagOf(opts.deletionProtection, 'deletionProtection'),
    };
    return keyOf(await this.transport.unary(KeyService.method.importKey, request, opts));
  }

  async getKey(name: string, opts: GetKeyOptions = {}): Promise<Key> {
    return keyOf(await this.transport.unary(KeyService.method.getKey, { name: keyName(name), view: enumOr(opts.view, parseKeyView) }, opts));
  }

  async listKeys(opts: ListKeysOptions = {}): Promise<ListKeysResponse> {
    const request = { pageSize: int32('pageSize', opts.pageSize), pageToken: optionalName(opts.pageToken, 'pageToken'), view: enumOr(opts.view, parseKeyView) };
    return this.transport.unary(KeyService.method.listKeys, request, opts);
  }

  /** Every key, in name order, fetching pages as the iteration goes. */
  async *keys(opts: Omit<ListKeysOptions, 'pageToken'> = {}): AsyncGenerator<Key, void, undefined> {
    let pageToken = '';
    do {
      const page = await this.listKeys({ ...opts, pageToken });
      yield* page.keys;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Generated keys: no material. Imported keys: the new version's material. */
  async rotateKey(name: string, material?: Uint8Array, opts: CallOptions = {}): Promise<Key> {
    return keyOf(await this.transport.unary(KeyService.method.rotateKey, { name: keyName(name), material: material === undefined ? undefined : bytesOf(material, 'the key material') }, opts));
  }

  async updateKey(name: string, opts: UpdateKeyOptions = {}): Promise<Key> {
    const request = {
      name: keyName(name),
      minDecryptionVersion: uint32('minDecryptionVersion', opts.minDecryptionVersion),
      rotationPeriod: duration('rotationPeriodMs', opts.rotationPeriodMs, MAX_ROTATION_PERIOD),
      deletionProtection: flagOf(opts.deletionProtection, 'deletionProtection'),
    };
    return keyOf(await this.transport.unary(KeyService.method.updateKey, request, opts));
  }

  async disableKey(name: string, opts: CallOptions = {}): Promise<Key> {
    return keyOf(await this.transport.unary(KeyService.method.disableKey, { name: keyName(name) }, opts));
  }

  async enableKey(name: string, opts: CallOptions = {}): Promise<Key> {
    return keyOf(await this.transport.unary(KeyService.method.enableKey, { name: keyName(name) }, opts));
  }

  async scheduleKeyDeletion(name: string, opts: ScheduleKeyDeletionOptions = {}): Promise<Key> {
    const request = { name: keyName(name), waitingPeriod: duration('waitingPeriodMs', opts.waitingPeriodMs, MAX_WAITING_PERIOD) };
    return keyOf(await this.transport.unary(KeyService.method.scheduleKeyDeletion, request, opts));
  }

  async cancelKeyDeletion(name: string, opts: CallOptions = {}): Promise<Key> {
    return keyOf(await this.transport.unary(KeyService.method.cancelKeyDeletion, { name: keyName(name) }, opts));
  }
}
