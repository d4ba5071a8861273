/**
 * Enforcement: what a call may do, given its principal (identity/connections.ts) and the policy.
 * A denial is PERMISSION_DENIED naming the operation and the key — never the rules, which are the
 * operator's business. A call without a principal (it did not come through the daemon's
 * listener) is denied everything.
 */
import type { Operation } from '../../policy/index.js';
import { ApiError, auditUnavailable, ErrorReason, Status } from '../api/errors.js';
import type { PeerCall } from '../identity/connections.js';
import type { Principal } from '../identity/principal.js';
import type { PolicyStore } from './policy-store.js';

/**
 * Throws PERMISSION_DENIED unless the caller may do `op` (on `key`), and UNAVAILABLE
 * (AUDIT_UNAVAILABLE) for anyone while the daemon cannot write its audit trail.
 */
export type Authorize = (op: Operation, key?: string) => void;

export interface CallAccess {
  principal: Principal | undefined;
  authorize: Authorize;
  /** Whether the caller may do `op` (on `key`), without throwing: ListKeys filters with it. */
  allows(op: Operation, key?: string): boolean;
  /**
   * For ListKeys: whether the caller may read some key (it then sees only those it may read).
   * Throws as authorize does while the audit trail cannot be written.
   */
  mayEverDo(op: Operation): boolean;
}

export function permissionDenied(principal: Principal | undefined, op: Operation, key?: string): ApiError {
  const who = principal ? `uid ${principal.uid}` : 'an unidentified caller';
  const what = key !== undefined ? `${op} with key "${key}"` : op === 'read' ? 'read keys' : `use ${op}`;
  return new ApiError(Status.PERMISSION_DENIED, ErrorReason.PERMISSION_DENIED, `the policy does not allow ${who} to ${what}`, {
    operation: op,
    ...(key !== undefined ? { key_name: key } : {}),
    ...(principal ? { uid: String(principal.uid) } : {}),
  });
}

/** For code paths with no caller (and a safe default): nothing is allowed. */
export const DENY_ALL: Authorize = (op, key) => {
  throw permissionDenied(undefined, op, key);
};

export class Access {
  constructor(
    private readonly store: PolicyStore,
    private readonly principalOf: (call: PeerCall) => Principal | undefined,
    /** The errno while the audit trail cannot be written (daemon/log-sink.ts). */
    private readonly auditFailing: () => string | undefined = () => undefined,
  ) {}

  forCall(call: PeerCall): CallAccess {
    const principal = this.principalOf(call);
    const allows = (op: Operation, key?: string) => principal !== undefined && this.store.decide(principal, op, key).allowed;
    // Every operation asks before it does anything (sessions and streams per operation, per
    // chunk), so an operation is refused, never done unaudited; health, reflection and
    // StatusService ask nothing, so an operator can still see the daemon.
    const audited = () => {
      const failing = this.auditFailing();
      if (failing !== undefined) throw auditUnavailable(failing);
    };
    return {
      principal,
      allows,
      authorize: (op, key) => {
        audited();
        if (!allows(op, key)) throw permissionDenied(principal, op, key);
      },
      mayEverDo: (op) => {
        audited();
        return principal !== undefined && this.store.mayEverDo(principal, op);
      },
    };
  }
}
