/**
 * The "initial user namespace" half of what af_alg_restrict=1 asks, checked in real namespaces: a
 * child one whose uid_map is the identity over all uids (what systemd's PrivateUsers=full writes)
 * passed the old uid_map test, and its CAP_NET_ADMIN counted (review by helper-119).
 */
import { describe, expect, it } from 'vitest';
import { projectModule, runTsJson } from '../../test/support/run-ts.js';
import { currentPrivilege, type Privilege } from './privilege.js';

// Runs "$@" in a new user namespace, its maps written by this (root) shell as the identity.
const IDENTITY_NAMESPACE = `unshare --user bash -c 'kill -STOP $$; exec "$@"' bash "$@" &
pid=$!
until [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" = T ]; do sleep 0.01; done
echo '0 0 4294967295' > /proc/$pid/uid_map
echo deny > /proc/$pid/setgroups
echo '0 0 4294967295' > /proc/$pid/gid_map
kill -CONT $pid
wait $pid`;

const snippet = `const { currentPrivilege } = await import(${projectModule('src/capabilities/privilege.ts')});
console.log(JSON.stringify(currentPrivilege()));`;

describe('currentPrivilege', { timeout: 60_000 }, () => {
  it('root in the initial user namespace (the test runs as root) is privileged enough', () => {
    expect(currentPrivilege()).toMatchObject({ uid: 0, capNetAdmin: true, initialUserNamespace: true, sufficientForRestricted: true });
  });

  it('root with every capability in a child namespace mapped 0-4294967295 onto itself is not', () => {
    const p = runTsJson<Privilege>(snippet, { wrapper: ['bash', '-c', IDENTITY_NAMESPACE, 'bash'] });
    expect(p).toMatchObject({ uid: 0, capNetAdmin: true, capSysAdmin: true, initialUserNamespace: false, sufficientForRestricted: false });
  });
});
