/**
 * deploy/policy.json, the starting policy operations.md installs, parsed by the daemon's own parser
 * against the accounts deploy/sysusers.d creates: it is valid, and grants exactly what its comment says.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decide, OPERATIONS, parseAccounts, parsePolicy, type Operation } from '../../src/policy/index.js';

const DEPLOY = join(resolve(import.meta.dirname, '../..'), 'deploy');

// The accounts of a host after systemd-sysusers (ids are the system's choice; these stand in).
const sysusers = readFileSync(join(DEPLOY, 'sysusers.d/ringfence.conf'), 'utf8');
const clientsGroup = /^g\s+(\S+)/m.exec(sysusers)![1]!;
const daemonUser = /^u\s+(\S+)/m.exec(sysusers)![1]!;
const [DAEMON, CLIENT, OUTSIDER, CLIENTS_GID, OTHER_GID] = [998, 1001, 1002, 997, 1000];
const accounts = parseAccounts(
  `root:x:0:0::/root:/bin/sh\n${daemonUser}:x:${DAEMON}:${DAEMON}::/var/lib/ringfence:/usr/sbin/nologin\norders:x:${CLIENT}:${OTHER_GID}::/:/bin/sh\nother:x:${OUTSIDER}:${OTHER_GID}::/:/bin/sh\n`,
  `root:x:0:\n${daemonUser}:x:${DAEMON}:\nusers:x:${OTHER_GID}:\n${clientsGroup}:x:${CLIENTS_GID}:orders\n`,
);
const policy = parsePolicy(readFileSync(join(DEPLOY, 'policy.json'), 'utf8'), accounts);
const admins = new Set([0, DAEMON]);
const allowed = (uid: number, op: Operation, key?: string) => decide(policy, admins, { uid, gid: OTHER_GID }, op, key).allowed;
const USE: Operation[] = ['encrypt', 'decrypt', 'reencrypt', 'datakey', 'mac', 'verify'];

describe('deploy/policy.json', () => {
  it(`lets members of ${clientsGroup} hash and draw random bytes, and use no key until a rule of their own says so (found by review)`, () => {
    for (const op of OPERATIONS) {
      const keyless = op === 'hash' || op === 'random';
      expect(allowed(CLIENT, op, keyless ? undefined : 'app-orders'), op).toBe(keyless);
      if (!keyless) expect(allowed(CLIENT, op, 'billing'), `${op} billing`).toBe(false);
    }
    expect(policy.warnings).toEqual([]);
  });

  it('its comment shows a per-service rule that the parser accepts and that grants use of that service\'s keys only', () => {
    const example = /e\.g\. (\{.*?\}) \(docs/.exec(JSON.parse(readFileSync(join(DEPLOY, 'policy.json'), 'utf8')).comment as string)![1]!;
    const withRule = parsePolicy(JSON.stringify({ rules: [{ ...JSON.parse(example), principals: [`uid:${CLIENT}`] }] }), accounts);
    for (const op of USE) {
      expect(decide(withRule, admins, { uid: CLIENT, gid: OTHER_GID }, op, 'orders-eu').allowed, op).toBe(true);
      expect(decide(withRule, admins, { uid: CLIENT, gid: OTHER_GID }, op, 'billing').allowed, op).toBe(false);
    }
  });

  it('denies a user outside the group everything; root and the daemon user administer', () => {
    for (const op of OPERATIONS) {
      const key = op === 'hash' || op === 'random' ? undefined : 'app-orders';
      expect(allowed(OUTSIDER, op, key), op).toBe(false);
      expect(allowed(0, op, key), op).toBe(true);
      expect(allowed(DAEMON, op, key), op).toBe(true);
    }
  });
});
