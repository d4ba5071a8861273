/**
 * The executable path an audit line gives for a caller is bytes the caller chose (review by
 * helper-143): read as UTF-8, invalid bytes all became U+FFFD and control or bidi characters went
 * into the log as they were.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { readExe, unmappedId } from './principal.js';
import { PROJECT_ROOT } from '../../../test/support/run-ts.js';

const dir = mkdtempSync(join(tmpdir(), 'rf-exe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('gives bytes outside printable ASCII, and the backslash, as \\xHH', async () => {
  // 0xff is not UTF-8; U+202E (bidi override) is e2 80 ae; a literal backslash too.
  const name = Buffer.concat([Buffer.from('sleep-'), Buffer.from([0xff]), Buffer.from('\u202e\\x41')]);
  const path = Buffer.concat([Buffer.from(`${dir}/`), name]);
  copyFileSync('/bin/sleep', path);
  // Node takes no Buffer as a command: the shell finds the file by its prefix and execs it.
  const child = spawn('/bin/sh', ['-c', 'exec ./sleep-* 30'], { cwd: dir, stdio: 'ignore' });
  try {
    await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    const want = `${dir}/sleep-\\xff\\xe2\\x80\\xae\\x5cx41`;
    await vi.waitFor(() => expect(readExe(child.pid!)).toBe(want)); // once the shell has exec'd
  } finally {
    child.kill();
  }
});

it('gives a plain path as it is, and nothing for a pid that is not there', () => {
  const node = realpathSync(process.execPath);
  expect(node).toMatch(/^[\x20-\x5b\x5d-\x7e]+$/);
  expect(readExe(process.pid)).toBe(node);
  expect(readExe(0)).toBeUndefined();
  expect(readExe(2 ** 22 + 1)).toBeUndefined(); // above pid_max's ceiling
});

/**
 * A daemon in a user namespace (a container) hears a caller whose uid its namespace does not map as
 * uid 65534, gid 65534 (overflowuid/gid), and its unmapped groups as 65534: a rule for nobody or
 * nogroup granted any such caller (review by helper-176).
 */
it('refuses a peer whose uid is not mapped in the daemon user namespace, and leaves out unmapped groups', async () => {
  expect(unmappedId(65534, '         0          0 4294967295\n')).toBeUndefined(); // the initial namespace
  expect(unmappedId(65534, '         0       1000      65536\n')).toBeUndefined(); // 65534 is someone here
  expect(unmappedId(65534, '         0          0          1\n')).toBe(65534);
  const sock = join(dir, 'ns.sock');
  chmodSync(dir, 0o755);
  // The server: root in a user namespace that maps only root (unshare -r), reading each peer twice.
  const code = `
    import { createServer } from 'node:net';
    import { principalOfSocket } from './src/daemon/identity/principal.ts';
    let n = 0;
    const server = createServer((s) => {
      let out;
      try { out = principalOfSocket(s); } catch (err) { out = { error: err.message }; }
      console.log(JSON.stringify(out));
      s.destroy();
      if (++n === 2) server.close();
    }).listen(${JSON.stringify(sock)}, () => console.log('listening'));`;
  const server = spawn('unshare', ['-r', 'sh', '-c', 'umask 0 && exec "$0" --import tsx --input-type=module -e "$1"', process.execPath, code], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, TSX_TSCONFIG_PATH: `${PROJECT_ROOT}tsconfig.json` },
  });
  let out = '';
  let errors = ''; // unshare -r needs user namespaces: if it fails, this says why
  server.stdout.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr.on('data', (d: Buffer) => (errors += d.toString()));
  try {
    await vi.waitFor(() => expect(out, `the server in a user namespace: ${errors}`).toContain('listening'), { timeout: 30_000 });
    const client = (wrapper: string[]) => spawnSync('setpriv', [...wrapper, process.execPath, '-e', `require('net').connect(${JSON.stringify(sock)}).on('close', () => process.exit(0))`], { timeout: 10_000 });
    client(['--reuid', '1234', '--regid', '1234', '--clear-groups']); // unmapped there
    await vi.waitFor(() => expect(out.trim().split('\n')).toHaveLength(2), { timeout: 10_000 });
    client(['--groups', '0,5000']); // root, mapped there; group 5000 is not
    await vi.waitFor(() => expect(out.trim().split('\n')).toHaveLength(3), { timeout: 10_000 });
    const [unmapped, root] = out.trim().split('\n').slice(1).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(unmapped).toEqual({ error: expect.stringMatching(/^the peer \(pid \d+\) has a uid or gid that the daemon's user namespace does not map \(the kernel reports uid 65534, gid 65534\)$/) });
    expect(root).toMatchObject({ uid: 0, gid: 0, groups: [0] });
  } finally {
    server.kill();
  }
});
