/**
 * Deny by default: a request is allowed when its uid is an administrator (root and the daemon's
 * own uid administer everything), or when some rule names one of its principals, grants the
 * operation, and (for operations on keys) has a pattern matching the key name.
 */
import { KEYLESS_OPERATIONS, type Operation } from './operations.js';
import type { Policy, Rule } from './parse.js';

export interface Subject {
  uid: number;
  gid: number;
  /**
   * Supplementary groups, as the kernel recorded them for the caller's connection (SO_PEERGROUPS).
   * Absent when there is no process to ask (`ringfence policy check`): then /etc/group decides.
   */
  groups?: readonly number[];
}

export type Decision = { allowed: true; by: 'admin'; explanation: string } | { allowed: true; by: 'rule'; rule: Rule; explanation: string } | { allowed: false; explanation: string };

/** The subject's groups: its gid (from SO_PEERCRED) and its supplementary ones, else those /etc/group lists its user in. */
function groupsOf(policy: Policy | undefined, s: Subject): Set<number> {
  return new Set([s.gid, ...(s.groups ?? policy?.memberOf.get(s.uid) ?? [])]);
}

function matchesPrincipal(rule: Rule, uid: number, gids: Set<number>): boolean {
  return rule.principals.some((p) => p.kind === 'any' || (p.kind === 'uid' && p.id === uid) || (p.kind === 'gid' && gids.has(p.id)));
}

/**
 * `policy` undefined means no policy file: only administrators. `key` is required for every
 * operation but hash and random.
 */
export function decide(policy: Policy | undefined, admins: ReadonlySet<number>, subject: Subject, op: Operation, key?: string): Decision {
  const what = KEYLESS_OPERATIONS.has(op) ? op : `${op} on key ${JSON.stringify(key ?? '')}`;
  if (admins.has(subject.uid)) return { allowed: true, by: 'admin', explanation: `uid ${subject.uid} is an administrator (root or the daemon's own uid) and may do anything` };
  if (!policy) return { allowed: false, explanation: `no policy is loaded, so only administrators may act; uid ${subject.uid} may not ${what}` };
  const gids = groupsOf(policy, subject);
  for (const rule of policy.rules) {
    if (!rule.operations.has(op) || !matchesPrincipal(rule, subject.uid, gids)) continue;
    if (KEYLESS_OPERATIONS.has(op)) return { allowed: true, by: 'rule', rule, explanation: `rule ${JSON.stringify(rule.id)} grants ${op}` };
    const pattern = key === undefined ? undefined : rule.keys.find((k) => k.match(key));
    if (pattern) return { allowed: true, by: 'rule', rule, explanation: `rule ${JSON.stringify(rule.id)} grants ${op} on keys matching ${JSON.stringify(pattern.pattern)}` };
  }
  return { allowed: false, explanation: `no rule grants uid ${subject.uid} (groups ${[...gids].join(', ')}) ${what}` };
}

/** Whether any rule could grant `op` on some key: ListKeys needs it to list anything at all. */
export function mayEverDo(policy: Policy | undefined, admins: ReadonlySet<number>, subject: Subject, op: Operation): boolean {
  if (admins.has(subject.uid)) return true;
  if (!policy) return false;
  const gids = groupsOf(policy, subject);
  return policy.rules.some((r) => r.operations.has(op) && matchesPrincipal(r, subject.uid, gids));
}
