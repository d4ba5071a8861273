/** KeyService: each RPC validates its request, calls the KeyManager, and returns the Key message. */
import type * as grpc from '@grpc/grpc-js';
import type { Duration } from '@bufbuild/protobuf/wkt';
import { KeyService } from '../../gen/ringfence/v1/key_service_pb.js';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { encodedSize } from '../../rpc/binary-encode.js';
import { KeySchema, KeyView } from '../../gen/ringfence/v1/key_pb.js';
import { DEFAULT_LIMITS } from '../config.js';
import { isValidKeyName, type KeyRecord } from '../keys/model.js';
import type { KeyManager } from '../keys/key-manager.js';
import { ApiError, ErrorReason, Status, invalidField } from './errors.js';
import { unary, type HandlerDeps } from './handler.js';
import { keyMessage } from './key-message.js';
import { keyView, purposeName, suiteName } from './suite-enum.js';
import { buf, requireName } from '../ops/context.js';
import type { CallAccess } from '../policy/access.js';
import type { Operation } from '../../policy/index.js';

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

/** A Duration in ms; negative or malformed ones are INVALID_FIELD. */
export function durationMs(field: string, d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  if (d.seconds < 0n || d.nanos < 0 || d.nanos > 999_999_999) throw invalidField(field, `${field} must be a non-negative duration`);
  if (d.seconds > 10n ** 12n) throw invalidField(field, `${field} is too long`);
  // Rounded up: a non-zero duration under a millisecond must not become 0, which means "off".
  return Number(d.seconds) * 1000 + Math.ceil(d.nanos / 1e6);
}

function pageAfter(token: string): string {
  if (!token) return '';
  const m = /^k1\.([A-Za-z0-9_-]*)$/.exec(token);
  const after = m ? Buffer.from(m[1]!, 'base64url').toString('utf8') : undefined;
  // A token names the last key of its page, so it holds a key name (that key may be gone since).
  if (after === undefined || !isValidKeyName(after)) throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.INVALID_PAGE_TOKEN, 'page_token is not one ListKeys returned', { field: 'page_token' });
  return after;
}

/** The request's key name, once the caller may do `op` on it. */
function named(access: CallAccess, op: Operation, name: string): string {
  const n = requireName('name', name);
  access.authorize(op, n);
  return n;
}

/** Room in a reply for what is not a Key: the page token, field tags and lengths. */
const REPLY_OVERHEAD_BYTES = 1024;

/** A Key message's encoded size inside its reply (field tag and length included). */
function encodedKeyBytes(key: MessageInitShape<typeof KeySchema>): number {
  return encodedSize(KeySchema, create(KeySchema, key)) + 6;
}

/**
 * `maxMessageBytes` bounds every reply (grpc-js would otherwise fail an oversized one with a bare
 * RESOURCE_EXHAUSTED after the handler had answered, and audited, OK).
 */
export function keyServiceHandlers(keys: KeyManager, deps: HandlerDeps, maxMessageBytes = DEFAULT_LIMITS.maxMessageBytes): grpc.UntypedServiceImplementation {
  const room = maxMessageBytes - REPLY_OVERHEAD_BYTES;
  /**
   * One key's reply in `view`, if it fits. If not: a call that changed the key (`changed`) or lists
   * keys answers with the basic view instead (failing it would invite a retry that changes the key
   * again); GetKey, which asked for this view, is refused saying what to do.
   */
  const reply = (record: KeyRecord, view: KeyView = KeyView.FULL, changed = false) => {
    const key = keyMessage(keys, record, view);
    const bytes = encodedKeyBytes(key);
    if (bytes <= room) return { key };
    if (changed) return { key: keyMessage(keys, record, KeyView.BASIC) };
    throw new ApiError(
      Status.RESOURCE_EXHAUSTED,
      ErrorReason.PAYLOAD_TOO_LARGE,
      `key "${record.name}" with its ${record.versions.length} versions is ${bytes} bytes in the full view, more than the largest reply (${room} bytes): read it with the basic view (GetKey view BASIC), or raise maxMessageBytes`,
      { field: 'key', actual_bytes: String(bytes), limit_bytes: String(room), key_name: record.name },
    );
  };

  const m = KeyService.method;
  return {
    createKey: unary(m.createKey, deps, async (req, a) => {
      // Length-checked before the policy sees it: a policy pattern is matched against the name.
      named(a, 'create', req.name);
      const record = await keys.create({
        name: req.name,
        purpose: purposeName(req.purpose),
        suite: suiteName(req.suite),
        rotationPeriodMs: durationMs('rotation_period', req.rotationPeriod) ?? null,
        deletionProtection: req.deletionProtection,
        ...(a.principal ? { creatorUid: a.principal.uid } : {}),
      });
      return { key: keyMessage(keys, record) };
    }),
    importKey: unary(m.importKey, deps, async (req, a) => {
      const material = buf(req.material);
      try {
        named(a, 'import', req.name);
        if (material.length === 0) throw new ApiError(Status.INVALID_ARGUMENT, ErrorReason.KEY_MATERIAL_INVALID, 'material is required', { field: 'material' });
        const record = await keys.import({ name: req.name, purpose: purposeName(req.purpose), suite: suiteName(req.suite), material, deletionProtection: req.deletionProtection, ...(a.principal ? { creatorUid: a.principal.uid } : {}) });
        return { key: keyMessage(keys, record) };
      } finally {
        material.fill(0); // also wipes the request message's copy: `buf` is a view of it
      }
    }),
    getKey: unary(m.getKey, deps, async (req, a) => {
      const name = requireName('name', req.name);
      a.authorize('read', name);
      const view = keyView(req.view, KeyView.FULL);
      return reply(keys.get(name), view);
    }),
    listKeys: unary(m.listKeys, deps, async (req, a) => {
      // Only keys the caller may read are listed; a caller who may read none is refused outright.
      if (!a.mayEverDo('read')) a.authorize('read');
      const view = keyView(req.view, KeyView.BASIC);
      if (req.pageSize < 0) throw invalidField('page_size', 'page_size must not be negative');
      const size = Math.min(req.pageSize || DEFAULT_PAGE, MAX_PAGE);
      // Filtered before paging: a page token names the last key of its page, which must be one the
      // caller may read (and pages stay full).
      const { keys: page, more } = keys.list(pageAfter(req.pageToken), size, (name) => a.allows('read', name));
      // A page ends early rather than outgrow the largest reply (the proto allows short pages).
      const out: MessageInitShape<typeof KeySchema>[] = [];
      let bytes = 0;
      for (const record of page) {
        const key = out.length === 0 ? reply(record, view, true).key : keyMessage(keys, record, view);
        bytes += encodedKeyBytes(key);
        if (bytes > room) break;
        out.push(key);
      }
      const last = out[out.length - 1];
      return {
        keys: out,
        nextPageToken: (more || out.length < page.length) && last ? `k1.${Buffer.from(last.name!).toString('base64url')}` : '',
      };
    }),
    rotateKey: unary(m.rotateKey, deps, async (req, a) => {
      const material = buf(req.material);
      try {
        const name = requireName('name', req.name);
        a.authorize('rotate', name);
        // The new version is charged to the caller rotating, not to the key's creator (found by review:
        // a tenant rotating an administrator's key was held to no per-caller cap).
        return reply(await keys.rotate(name, material.length ? material : undefined, a.principal?.uid), KeyView.FULL, true);
      } finally {
        material.fill(0);
      }
    }),
    updateKey: unary(m.updateKey, deps, async (req, a) => {
      const name = requireName('name', req.name);
      a.authorize('update', name);
      const period = durationMs('rotation_period', req.rotationPeriod);
      const record = await keys.update(name, {
        ...(req.minDecryptionVersion !== undefined ? { minDecryptionVersion: req.minDecryptionVersion } : {}),
        ...(period !== undefined ? { rotationPeriodMs: period || null } : {}),
        ...(req.deletionProtection !== undefined ? { deletionProtection: req.deletionProtection } : {}),
      });
      return reply(record, KeyView.FULL, true);
    }),
    disableKey: unary(m.disableKey, deps, async (req, a) => reply(await keys.setEnabled(named(a, 'disable', req.name), false), KeyView.FULL, true)),
    enableKey: unary(m.enableKey, deps, async (req, a) => reply(await keys.setEnabled(named(a, 'enable', req.name), true), KeyView.FULL, true)),
    scheduleKeyDeletion: unary(m.scheduleKeyDeletion, deps, async (req, a) =>
      reply(await keys.scheduleDeletion(named(a, 'delete', req.name), durationMs('waiting_period', req.waitingPeriod)), KeyView.FULL, true),
    ),
    cancelKeyDeletion: unary(m.cancelKeyDeletion, deps, async (req, a) => reply(await keys.cancelDeletion(named(a, 'delete', req.name)), KeyView.FULL, true)),
  };
}
