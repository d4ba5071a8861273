/**
 * The systemd files in deploy/ as shipped: `systemd-analyze verify` clean, `systemd-analyze security
 * --offline=true` exposure at most 2.0, and the syscalls the daemon needs inside @system-service.
 * systemd-analyze is required (.ci/run installs `systemd`): without it these tests fail, never skip.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT_SOCKET_PATH } from '../../src/rpc/socket-path.js';
import { resolveConfig, type DaemonConfig } from '../../src/daemon/config.js';
import { defaultPolicyPath } from '../../src/policy/default-path.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
/** Where the unit expects the package; the copies under test point at this checkout instead. */
const INSTALL_PREFIX = '/usr/lib/ringfence';
const MAX_EXPOSURE = 2.0;

function analyze(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', cwd: tmp, env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: 'cat' } });
  if (r.error) {
    throw new Error(`systemd-analyze is required for these tests and could not be run (${(r.error as NodeJS.ErrnoException).code}); install Debian's "systemd" package (.ci/run does)`);
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const unitText = (name: string) => readFileSync(join(DEPLOY, name), 'utf8');
/** Directive values of a unit file, comments dropped: name -> every value in order. */
function directives(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    map.set(key, [...(map.get(key) ?? []), line.slice(eq + 1)]);
  }
  return map;
}

// Copies of the shipped units whose ExecStart points at this checkout's bin/ringfenced, which
// verify requires to exist; nothing else is changed.
const tmp = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'rf-units-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const service = unitText('ringfenced.service');
expect(service).toContain(`ExecStart=${INSTALL_PREFIX}/bin/ringfenced `);
writeFileSync(join(tmp, 'ringfenced.service'), service.replaceAll(`ExecStart=${INSTALL_PREFIX}/`, `ExecStart=${ROOT}/`));
cpSync(join(DEPLOY, 'ringfenced.socket'), join(tmp, 'ringfenced.socket'));

// systemd-analyze takes seconds per run on a loaded machine (a VM beside it): not a speed check.
describe('deploy/ringfenced.service and .socket', { timeout: 60_000 }, () => {
  it('pass systemd-analyze verify without a message', () => {
    const r = analyze('verify', join(tmp, 'ringfenced.service'), join(tmp, 'ringfenced.socket'));
    const ours = (r.stdout + r.stderr).split('\n').filter((l) => /ringfenced|\.service|\.socket/.test(l));
    expect(ours, r.stderr).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
  });

  it(`have an offline security exposure of at most ${MAX_EXPOSURE}`, () => {
    const r = analyze('security', '--offline=true', '--no-pager', join(tmp, 'ringfenced.service'));
    const m = /Overall exposure level for ringfenced\.service: (\d+(?:\.\d+)?)/.exec(r.stdout);
    expect(m, `no "Overall exposure level" line in:\n${r.stdout}\n${r.stderr}`).not.toBeNull();
    const exposure = Number(m![1]);
    expect(exposure, r.stdout).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it('allow, in @system-service, every syscall the daemon makes for keys and AF_ALG', () => {
    const expand = (set: string, seen = new Set<string>()): Set<string> => {
      const r = analyze('syscall-filter', set);
      expect(r.status, r.stderr).toBe(0);
      for (const l of r.stdout.split('\n').slice(1)) {
        const name = l.trim();
        if (!name || name.startsWith('#')) continue;
        if (name.startsWith('@')) expand(name, seen);
        else seen.add(name);
      }
      return seen;
    };
    const allowed = expand('@system-service');
    const needed = ['add_key', 'keyctl', 'request_key', 'socket', 'bind', 'accept4', 'setsockopt', 'sendmsg', 'recvmsg', 'sendto', 'read', 'write', 'close', 'getrandom', 'listen', 'connect', 'flock'];
    expect(needed.filter((s) => !allowed.has(s))).toEqual([]);
    // The unit denies @privileged on top: none of those may be among them.
    const privileged = expand('@privileged');
    expect(needed.filter((s) => privileged.has(s))).toEqual([]);
  });

  it('keep what the daemon needs and leave out what breaks it', () => {
    const d = directives(service);
    expect(d.get('Type')).toEqual(['notify']);
    expect(d.get('RestrictAddressFamilies')).toEqual(['AF_UNIX AF_ALG']);
    expect(d.get('CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN']);
    expect(d.get('AmbientCapabilities')).toEqual(['CAP_NET_ADMIN']);
    expect(d.get('KeyringMode')).toEqual(['private']);
    expect(d.get('ProtectSystem')).toEqual(['strict']);
    expect(d.get('NoNewPrivileges')).toEqual(['yes']);
    expect(d.get('LoadCredentialEncrypted')?.[0]).toMatch(/^master\.key:\//); // the name master-key.ts reads
    expect(d.get('Environment')?.some((e) => /^UV_THREADPOOL_SIZE=\d+$/.test(e))).toBe(true);
    expect(Number(/^(\d+)s$/.exec(d.get('WatchdogSec')?.[0] ?? '')?.[1])).toBeGreaterThan(0);
    // V8 needs W+X pages; PrivateUsers= would take CAP_NET_ADMIN out of the initial user namespace;
    // ProcSubset=pid would hide /proc/crypto and /proc/sys from the capability probe.
    for (const k of ['MemoryDenyWriteExecute', 'PrivateUsers', 'ProcSubset', 'DynamicUser']) expect(d.has(k), k).toBe(false);
    // `systemctl reload` as the docs say (a policy reload); without ExecReload= systemd refuses it.
    expect(d.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    // StateDirectory= hands an existing state dir's files to the service user only when the directory
    // is not yet its: a tmpfiles entry for it would make it so first, leaving a root run's files root's.
    expect(d.get('StateDirectory')).toEqual(['ringfence']);
    expect(readFileSync(join(DEPLOY, 'tmpfiles.d/ringfence.conf'), 'utf8')).not.toMatch(/^[^#].*\/var\/lib\/ringfence/m);
  });

  it("starts the daemon, as its non-root user, on the system's socket, state and policy paths", () => {
    // What docs/operations.md installs: the policy where `ringfence policy check` (as root) reads it.
    const argv = directives(service).get('ExecStart')![0]!.split(/\s+/).slice(1);
    const uid = 999; // the sysusers.d user: not root, so the daemon's own defaults would be per-user
    for (const env of [{}, { HOME: '/var/lib/ringfence' }]) {
      const config = resolveConfig(argv, env, uid) as DaemonConfig;
      expect(config.socket).toBe(ROOT_SOCKET_PATH);
      expect(config.stateDir).toBe('/var/lib/ringfence');
      expect(config.policy).toBe(defaultPolicyPath({}, 0));
    }
    expect(readFileSync(join(ROOT, 'docs/operations.md'), 'utf8')).toContain(`\`deploy/policy.json\` | \`${defaultPolicyPath({}, 0)}\``);
  });

  it('socket: the daemon default path, group-only access', () => {
    const d = directives(unitText('ringfenced.socket'));
    expect(d.get('ListenStream')).toEqual([ROOT_SOCKET_PATH]);
    expect(d.get('SocketMode')).toEqual(['0660']);
    expect(service).toContain(`--socket ${ROOT_SOCKET_PATH}`);
    const sysusers = readFileSync(join(DEPLOY, 'sysusers.d/ringfence.conf'), 'utf8');
    expect(sysusers).toMatch(new RegExp(`^u ${d.get('SocketUser')![0]} `, 'm'));
    expect(sysusers).toMatch(new RegExp(`^g ${d.get('SocketGroup')![0]} `, 'm'));
    expect(directives(service).get('User')).toEqual([d.get('SocketUser')![0]]);
  });
});

describe('deploy/sysctl.d/ringfence.conf', () => {
  it('raises the non-root key quotas to the documented capacity', () => {
    const text = readFileSync(join(DEPLOY, 'sysctl.d/ringfence.conf'), 'utf8');
    const value = (k: string) => Number(new RegExp(`^${k.replaceAll('.', '\\.')} = (\\d+)$`, 'm').exec(text)?.[1]);
    // 10,000 versions at 2 keys / 410 bytes each, plus the fixed 10 keys / 500 bytes (see the file).
    expect(value('kernel.keys.maxkeys')).toBeGreaterThanOrEqual(2 * 10_000 + 10);
    expect(value('kernel.keys.maxbytes')).toBeGreaterThanOrEqual(410 * 10_000 + 500);
  });
});
