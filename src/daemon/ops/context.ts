/**
 * What every operation needs: the keys, the kernel engine, the limits, and what the kernel allows.
 * Operations are plain async functions of (context, request) -> response, shared by the unary RPCs,
 * the batch RPCs and the Session stream, so all three behave exactly alike.
 */
import type { AlgStatus } from '../../capabilities/probe.js';
import type { CryptoEngine } from '../engine/engine.js';
import type { KeyManager } from '../keys/key-manager.js';
import { isValidKeyName, KEY_NAME_RULE } from '../keys/model.js';
import { payloadTooLarge, invalidField } from '../api/errors.js';
import type { Authorize } from '../policy/access.js';
import type { MemoryBudget } from '../api/memory-budget.js';
import type { CallerSlots } from '../api/caller-slots.js';
import type { Drain } from '../api/drain.js';

export interface OpLimits {
  maxPayloadBytes: number;
  maxAssociatedDataBytes: number;
  maxStreamChunkBytes: number;
  maxBatchItems: number;
  maxSessionInFlight: number;
  maxSessionBufferedBytes: number;
  /** Largest gRPC message the daemon receives or sends. */
  maxMessageBytes: number;
}

export interface OpContext {
  keys: KeyManager;
  engine: CryptoEngine;
  limits: OpLimits;
  suiteStatus: (name: string) => AlgStatus;
  /** The calling principal's policy check (per call; see daemon/policy/access.ts). */
  authorize: Authorize;
  /** What Sessions and streams may buffer together (api/memory-budget.ts). */
  budget: MemoryBudget;
  /** HashStreams each caller has open (api/caller-slots.ts). */
  hashStreamSlots: CallerSlots;
  /** The daemon's stop, for Sessions and unary calls waiting for room (api/drain.ts); absent where nothing stops (tests). */
  drain?: Drain;
}

/** A Buffer view of a protobuf bytes field (no copy). */
export function buf(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** What a refusal of larger data advises, by where the data came. */
export const SIZE_HINT = {
  encrypt: 'encrypt larger data with EncryptStream',
  decrypt: 'larger data is encrypted with EncryptStream and decrypted with DecryptStream',
  hash: 'hash larger data with HashStream',
  mac: 'there is no streaming MAC: MAC a HashStream digest of larger data',
  aad: 'associated data has this limit in every RPC, streams included: shorten it',
  streamMessage: 'send it in smaller messages',
} as const;

export function checkSize(field: string, data: Uint8Array, limit: number, hint?: string): Buffer {
  if (data.byteLength > limit) throw payloadTooLarge(field, data.byteLength, limit, hint);
  return buf(data);
}

/** A key name from a request: present and well-formed (no key has any other name), or INVALID_ARGUMENT. */
export function requireName(field: string, name: string): string {
  if (!name) throw invalidField(field, `${field} is required`);
  if (!isValidKeyName(name)) throw invalidField(field, `${field} is not a key name: key names are ${KEY_NAME_RULE}`);
  return name;
}
