/**
 * User and group names, resolved from /etc/passwd and /etc/group (the files only — no NSS, so
 * LDAP/sssd names are not seen; use uid:/gid: for those). Parsing is pure; reading is separate.
 */
import { readFileSync } from 'node:fs';

export interface Accounts {
  /** user name -> uid */
  users: Map<string, number>;
  /** uid -> primary gid */
  primaryGid: Map<number, number>;
  /** group name -> gid */
  groups: Map<string, number>;
  /** uid -> supplementary gids (groups whose member list names the user) */
  memberOf: Map<number, number[]>;
}

function lines(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

const id = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

export function parseAccounts(passwd: string, group: string): Accounts {
  const users = new Map<string, number>();
  const primaryGid = new Map<number, number>();
  for (const [name, , uid, gid] of lines(passwd)) {
    const n = id(uid);
    if (name && n !== undefined && !users.has(name)) users.set(name, n);
    const g = id(gid);
    if (n !== undefined && g !== undefined && !primaryGid.has(n)) primaryGid.set(n, g);
  }
  const groups = new Map<string, number>();
  const memberOf = new Map<number, number[]>();
  for (const [name, , gid, members] of lines(group)) {
    const g = id(gid);
    if (!name || g === undefined) continue;
    if (!groups.has(name)) groups.set(name, g);
    for (const m of (members ?? '').split(',')) {
      const uid = users.get(m.trim());
      if (uid === undefined) continue;
      const list = memberOf.get(uid) ?? [];
      if (!list.includes(g)) list.push(g);
      memberOf.set(uid, list);
    }
  }
  return { users, primaryGid, groups, memberOf };
}

export function readAccounts(root = '/etc'): Accounts {
  const read = (f: string) => {
    try {
      return readFileSync(`${root}/${f}`, 'utf8');
    } catch {
      return '';
    }
  };
  return parseAccounts(read('passwd'), read('group'));
}
