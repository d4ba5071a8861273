/**
 * docs/operations.md's Install section as an operator follows it literally: every file its table
 * places is copied there by the commands, before the command that reads it (the first of them,
 * `systemd-sysusers`, did nothing without its file, and `install -g ringfence` then failed); the kernel
 * minimum is stated; and sysusers.d + tmpfiles.d, applied to an empty root, give the users, groups
 * and directories the units need. Runs as root, as the host suite does (tmpfiles chowns).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const PREFIX = '/usr/lib/ringfence';
const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
const install = doc.slice(doc.indexOf('\n## Install\n'), doc.indexOf('\n## ', doc.indexOf('\n## Install\n') + 1));

/** Table rows: `deploy/X` -> where it goes (a directory ending in `/`, or a file). */
const rows = [...install.matchAll(/^\| `(deploy\/[^`]+)` \| `(\/[^`]+)`/gm)].map((m) => ({ file: m[1]!, dest: m[2]! }));
/** The command lines of the block that sets the host up (the one running systemd-sysusers). */
const block = [...install.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => /^systemd-sysusers\b/m.test(b)) ?? '';
const lines = block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l && !l.startsWith('#'));

/** Which command first reads each kind of file. */
const readers: [RegExp, RegExp][] = [
  [/^deploy\/sysusers\.d\//, /^systemd-sysusers\b/],
  [/^deploy\/tmpfiles\.d\//, /^systemd-tmpfiles\b/],
  [/^deploy\/sysctl\.d\//, /^sysctl --system\b/],
  [/^deploy\/modules-load\.d\//, /^systemctl restart systemd-modules-load\b/],
  [/^deploy\/ringfenced\.(service|socket)$/, /^systemctl daemon-reload\b/],
];

describe('docs/operations.md, Install', () => {
  it('has a table of the deploy files and a block of commands', () => {
    expect(rows.length).toBeGreaterThanOrEqual(7);
    expect(lines.length).toBeGreaterThan(0);
  });

  it.each(rows)('copies $file to $dest before it is used', ({ file, dest }) => {
    const source = `${PREFIX}/${file}`;
    const target = dest.endsWith('/') ? dest : dest.split(/\s/)[0]!;
    const at = lines.findIndex((l) => /^(install|cp)\b/.test(l) && l.split(/\s+/).includes(source) && (l.endsWith(` ${target}`) || l.endsWith(` ${target}${basename(file)}`) || l.endsWith(` ${target.replace(/\/$/, '')}/${basename(file)}`)));
    expect(at, `no command in the Install block copies ${source} to ${dest}:\n${lines.join('\n')}`).toBeGreaterThanOrEqual(0);
    for (const [kind, reader] of readers) {
      if (!kind.test(file)) continue;
      const used = lines.findIndex((l) => reader.test(l));
      expect(used, `${reader} missing`).toBeGreaterThanOrEqual(0);
      expect(at, `${file} is copied after ${lines[used]}`).toBeLessThan(used);
    }
  });

  it("states the kernel minimum the README gives (Debian 12's default kernel is below it)", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const min = /\*\*Linux >= (\d+\.\d+)\*\* for `ALG_SET_KEY_BY_KEY_SERIAL`/.exec(readme)?.[1];
    expect(min).toBeDefined();
    expect(install).toContain(`Linux >= ${min}`);
  });
});

describe('deploy/sysusers.d and tmpfiles.d on an empty root', () => {
  const tmp = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'rf-install-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const run = (cmd: string, ...args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.error) throw new Error(`${cmd} is required for this test (Debian's "systemd" package): ${(r.error as NodeJS.ErrnoException).code}`);
    expect(r.status, r.stderr).toBe(0);
  };

  it('create the users and groups the units name, and the directories with the owners and modes they expect', () => {
    for (const d of ['usr/lib/sysusers.d', 'usr/lib/tmpfiles.d', 'etc', 'run', 'var/lib']) mkdirSync(join(tmp, d), { recursive: true });
    run('install', '-m', '0644', join(ROOT, 'deploy/sysusers.d/ringfence.conf'), join(tmp, 'usr/lib/sysusers.d/'));
    run('install', '-m', '0644', join(ROOT, 'deploy/tmpfiles.d/ringfence.conf'), join(tmp, 'usr/lib/tmpfiles.d/'));
    run('systemd-sysusers', `--root=${tmp}`);
    run('systemd-tmpfiles', '--create', `--root=${tmp}`);
    const ids = (file: string) => new Map(readFileSync(join(tmp, 'etc', file), 'utf8').split('\n').filter(Boolean).map((l) => [l.split(':')[0]!, Number(l.split(':')[2])]));
    const users = ids('passwd');
    const groups = ids('group');
    const unit = (name: string) => readFileSync(join(ROOT, 'deploy', name), 'utf8');
    const value = (text: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(text)?.[1];
    const service = unit('ringfenced.service');
    const socket = unit('ringfenced.socket');
    for (const u of [value(service, 'User'), value(socket, 'SocketUser')]) expect(users.has(u!), `user ${u}`).toBe(true);
    for (const g of [value(service, 'Group'), value(socket, 'SocketGroup')]) expect(groups.has(g!), `group ${g}`).toBe(true);
    // /run/ringfence as the service's RuntimeDirectory= would leave it, so it chowns nothing in it (the socket).
    const run_ = statSync(join(tmp, 'run/ringfence'));
    expect([run_.uid, run_.gid, (run_.mode & 0o7777).toString(8)]).toEqual([users.get(value(service, 'User')!), groups.get(value(service, 'Group')!), value(service, 'RuntimeDirectoryMode')!.replace(/^0/, '')]);
    const cred = statSync(join(tmp, 'etc/credstore.encrypted'));
    expect([cred.uid, (cred.mode & 0o7777).toString(8)]).toEqual([0, '700']);
    // LoadCredentialEncrypted= reads from the directory tmpfiles made.
    expect(value(service, 'LoadCredentialEncrypted')).toMatch(/^master\.key:\/etc\/credstore\.encrypted\//);
  });
});
