/**
 * The policy file: JSON, validated strictly (unknown fields and unknown operations are errors, each
 * naming its place, e.g. `rules[2].operations[1]`, or line:column for a syntax error; a name given
 * twice in one object is an error too). User and
 * group names are resolved to ids here, once per load; one that does not resolve matches nobody and
 * is reported as a warning (an account removed must not make every later edit invalid, nor keep its
 * old uid's grants in force). Format: docs/policy.md.
 */
import { compileGlob } from './glob.js';
import { KEYLESS_OPERATIONS, OPERATION_GROUPS, OPERATIONS, isOperation, type Operation } from './operations.js';
import type { Accounts } from './accounts.js';
import { firstDuplicateName } from '../json/duplicate-names.js';
import { lineColumn } from '../json/position.js';

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

export type PrincipalMatcher =
  | { kind: 'any'; text: string }
  | { kind: 'uid'; id: number; text: string }
  | { kind: 'gid'; id: number; text: string }
  /** A user or group name that did not resolve at load: matches nobody. */
  | { kind: 'none'; text: string };

export interface Rule {
  /** The rule's `id`, or `rules[N]`: used in explanations and logs, never sent to clients. */
  id: string;
  principals: PrincipalMatcher[];
  operations: ReadonlySet<Operation>;
  keys: { pattern: string; match: (name: string) => boolean }[];
}

export interface Policy {
  rules: Rule[];
  /** uid -> supplementary gids, from /etc/group at load time: for callers without a process (`policy check`). */
  memberOf: ReadonlyMap<number, readonly number[]>;
  /** What the file asks that cannot apply now (names that do not resolve), each naming its place. */
  warnings: string[];
}

const RULE_FIELDS = ['id', 'principals', 'operations', 'keys', 'comment'];
const MAX_RULES = 10_000;

/**
 * Where JSON.parse failed. Its message says "at position N" for some errors but not for others
 * (Node 20: a trailing comma, a stray brace or a bare word give "Unexpected token ..." with no
 * position: found by review); then the error is at the end of the shortest prefix that fails for a
 * reason other than ending early (a prefix cut short fails at its own length, or "end of JSON").
 */
function errorOffset(text: string, err: Error): number {
  const stated = /position (\d+)/.exec(err.message)?.[1];
  if (stated !== undefined) return Number(stated);
  if (/end of JSON/.test(err.message)) return text.length;
  const failsWithin = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (e) {
      const message = (e as Error).message;
      const at = /position (\d+)/.exec(message)?.[1];
      return !/end of JSON/.test(message) && (at === undefined || Number(at) < length);
    }
  };
  let lo = 1;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (failsWithin(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo - 1;
}

/** JSON.parse's error -> line:column. */
function syntaxError(text: string, err: Error): PolicyError {
  return new PolicyError(`${lineColumn(text, errorOffset(text, err))}: not valid JSON (${err.message.replace(/ in JSON at position \d+.*$/s, '')})`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(v: unknown, at: string): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new PolicyError(`${at}: must be a non-empty array of strings`);
  return v.map((s, i) => {
    if (typeof s !== 'string' || s === '') throw new PolicyError(`${at}[${i}]: must be a non-empty string`);
    return s;
  });
}

function principal(text: string, at: string, accounts: Accounts, warnings: string[]): PrincipalMatcher {
  if (text === '*') return { kind: 'any', text };
  const m = /^(uid|gid|user|group):(.+)$/.exec(text);
  if (!m) throw new PolicyError(`${at}: ${JSON.stringify(text)} is not a principal (uid:N, gid:N, user:NAME, group:NAME or *)`);
  const [, kind, value] = m as unknown as [string, string, string];
  if (kind === 'uid' || kind === 'gid') {
    if (!/^\d{1,10}$/.test(value) || Number(value) > 0xffffffff) throw new PolicyError(`${at}: ${JSON.stringify(value)} is not a numeric ${kind}`);
    return { kind, id: Number(value), text };
  }
  const id = (kind === 'user' ? accounts.users : accounts.groups).get(value);
  if (id === undefined) {
    warnings.push(`${at}: no ${kind} named ${JSON.stringify(value)} in /etc/${kind === 'user' ? 'passwd' : 'group'}; it matches nobody until it exists and the policy is reloaded`);
    return { kind: 'none', text };
  }
  return { kind: kind === 'user' ? 'uid' : 'gid', id, text };
}

function parseRule(raw: unknown, index: number, accounts: Accounts, warnings: string[]): Rule {
  const at = `rules[${index}]`;
  if (!isObject(raw)) throw new PolicyError(`${at}: must be an object`);
  for (const k of Object.keys(raw)) if (!RULE_FIELDS.includes(k)) throw new PolicyError(`${at}.${k}: unknown field (known: ${RULE_FIELDS.join(', ')})`);
  if (raw.id !== undefined && (typeof raw.id !== 'string' || raw.id === '')) throw new PolicyError(`${at}.id: must be a non-empty string`);
  if (raw.comment !== undefined && typeof raw.comment !== 'string') throw new PolicyError(`${at}.comment: must be a string`);
  const principals = stringList(raw.principals, `${at}.principals`).map((p, i) => principal(p, `${at}.principals[${i}]`, accounts, warnings));
  const operations = new Set<Operation>();
  stringList(raw.operations, `${at}.operations`).forEach((o, i) => {
    const group = Object.hasOwn(OPERATION_GROUPS, o) ? OPERATION_GROUPS[o] : undefined; // not "constructor" & co.
    if (group) group.forEach((g) => operations.add(g));
    else if (isOperation(o)) operations.add(o);
    else throw new PolicyError(`${at}.operations[${i}]: ${JSON.stringify(o)} is not an operation (${OPERATIONS.join(', ')}, or ${Object.keys(OPERATION_GROUPS).join(', ')})`);
  });
  const keyed = [...operations].some((o) => !KEYLESS_OPERATIONS.has(o));
  if (raw.keys === undefined && keyed) throw new PolicyError(`${at}.keys: required when operations name keys (use ["*"] for every key)`);
  const keys = raw.keys === undefined ? [] : stringList(raw.keys, `${at}.keys`).map((pattern) => ({ pattern, match: compileGlob(pattern) }));
  return { id: (raw.id as string | undefined) ?? at, principals, operations, keys };
}

export function parsePolicy(text: string, accounts: Accounts): Policy {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw syntaxError(text, err as Error);
  }
  // JSON.parse keeps the last of a repeated name: the file would grant other than what it reads as.
  const repeated = firstDuplicateName(text);
  if (repeated) throw new PolicyError(`${repeated.path}: given twice (again at ${repeated.at}); remove one`);
  if (!isObject(doc)) throw new PolicyError('the policy must be a JSON object with a "rules" array');
  for (const k of Object.keys(doc)) if (k !== 'rules' && k !== 'comment') throw new PolicyError(`${k}: unknown field (known: rules, comment)`);
  if (!Array.isArray(doc.rules)) throw new PolicyError('rules: must be an array');
  if (doc.rules.length > MAX_RULES) throw new PolicyError(`rules: more than ${MAX_RULES} rules`);
  const warnings: string[] = [];
  const rules = doc.rules.map((r, i) => parseRule(r, i, accounts, warnings));
  const ids = new Set<string>();
  rules.forEach((r, i) => {
    if (ids.has(r.id)) throw new PolicyError(`rules[${i}].id: ${JSON.stringify(r.id)} is used by an earlier rule`);
    ids.add(r.id);
  });
  return { rules, memberOf: accounts.memberOf, warnings };
}
