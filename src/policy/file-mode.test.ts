/** policyPathRefusal: who could change which file the policy path names (found by review); readPolicyFile. */
import { chmodSync, chownSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { PROJECT_ROOT, projectModule, runTs } from '../../test/support/run-ts.js';
import { MAX_POLICY_BYTES, policyPathRefusal, readPolicyFile } from './index.js';

const uid = process.getuid!();
const OTHER = 12345;
const made: string[] = [];
afterEach(() => {
  for (const p of made.splice(0)) rmSync(p, { recursive: true, force: true });
});

/** A 0755 directory owned by the test's uid, with a policy.json in it. */
function base(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rf-path-'));
  made.push(dir);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'policy.json'), '{"rules": []}', { mode: 0o644 });
  return dir;
}

function subdir(parent: string, name: string, mode: number): string {
  const dir = join(parent, name);
  mkdirSync(dir);
  chmodSync(dir, mode); // not left to the umask
  return dir;
}

describe('policyPathRefusal', () => {
  it('accepts a path through directories only root or the daemon can write', () => {
    const dir = base();
    expect(policyPathRefusal(join(dir, 'policy.json'), uid)).toBeUndefined();
    expect(policyPathRefusal(join(dir, 'missing.json'), uid)).toBeUndefined();
    expect(policyPathRefusal(join(dir, 'no-dir', 'policy.json'), uid)).toBeUndefined();
  });

  it('refuses a directory on the way writable by every user or by its group, unless sticky', () => {
    const dir = base();
    for (const [mode, who, fix] of [[0o777, 'every user', 'o-w'], [0o775, 'its group', 'g-w']] as const) {
      const open = subdir(dir, `m${mode.toString(8)}`, mode);
      const inner = subdir(open, 'inner', 0o755);
      writeFileSync(join(inner, 'policy.json'), '{}');
      const why = `the directory ${open} on its path is writable by ${who}, who could replace or delete the file (chmod ${fix} ${open})`;
      expect(policyPathRefusal(join(inner, 'policy.json'), uid)).toBe(why);
      // Missing: whoever deleted it there must not be able to turn the policy off.
      expect(policyPathRefusal(join(open, 'policy.json'), uid)).toBe(why);
      chmodSync(open, 0o1000 | mode);
      expect(policyPathRefusal(join(inner, 'policy.json'), uid)).toBeUndefined();
    }
  });

  it('refuses a directory on the way owned by another uid than root or the daemon', () => {
    // As root: chown it. As another user: its own directories, for a daemon of another uid.
    const dir = base();
    const owned = uid === 0 ? subdir(dir, 'owned', 0o755) : dir;
    if (uid === 0) chownSync(owned, OTHER, OTHER);
    const owner = uid === 0 ? OTHER : uid;
    const daemonUid = uid === 0 ? 0 : uid + 1;
    const path = join(owned, 'policy.json');
    expect(policyPathRefusal(path, daemonUid)).toBe(`the directory ${owned} on its path belongs to uid ${owner}, not to root or the daemon's uid ${daemonUid} (chown root ${owned})`);
    expect(policyPathRefusal(path, owner)).toBeUndefined();
    expect(policyPathRefusal(path, undefined)).toBeUndefined(); // `policy check` without --daemon-uid
  });

  it('refuses a symlink owned by another uid, as one planted in /tmp would be', () => {
    const dir = base();
    const link = join(tmpdir(), `rf-link-${process.pid}-${Date.now()}`);
    made.push(link);
    symlinkSync(join(dir, 'policy.json'), link);
    if (uid === 0) lchownSync(link, OTHER, OTHER);
    const owner = uid === 0 ? OTHER : uid;
    const daemonUid = uid === 0 ? 0 : uid + 1;
    expect(policyPathRefusal(link, daemonUid)).toBe(`the symlink ${link} on its path belongs to uid ${owner}, not to root or the daemon's uid ${daemonUid} (chown -h root ${link})`);
    if (uid === 0) {
      lchownSync(link, 0, 0);
      expect(policyPathRefusal(link, 0)).toBeUndefined();
    }
  });

  it('follows symlinks into the directories they lead to: a ..data layout in a safe directory is accepted, a writable target directory refused', () => {
    for (const mode of [0o755, 0o1777]) {
      const mount = subdir(base(), 'config', mode);
      const version = subdir(mount, '..2024_01_01_00_00_00.1', 0o755);
      writeFileSync(join(version, 'policy.json'), '{}', { mode: 0o644 });
      symlinkSync('..2024_01_01_00_00_00.1', join(mount, '..data'));
      symlinkSync('..data/policy.json', join(mount, 'policy.json'));
      expect(policyPathRefusal(join(mount, 'policy.json'), uid)).toBeUndefined();
      chmodSync(version, 0o777);
      expect(policyPathRefusal(join(mount, 'policy.json'), uid)).toBe(`the directory ${version} on its path is writable by every user, who could replace or delete the file (chmod o-w ${version})`);
    }
  });

  it('resolves `..` after a symlink where the link leads, as the kernel does, and relative paths from the working directory', () => {
    const dir = base();
    const elsewhere = subdir(dir, 'elsewhere', 0o777);
    const deep = subdir(elsewhere, 'deep', 0o755);
    symlinkSync(deep, join(dir, 'link'));
    // Lexically dir/link/../policy.json is dir/policy.json; the kernel opens elsewhere/policy.json.
    expect(policyPathRefusal(`${dir}/link/../policy.json`, uid)).toMatch(`the directory ${elsewhere} on its path is writable by every user`);
    expect(policyPathRefusal(`${dir}/./elsewhere/../policy.json`, uid)).toBeUndefined();
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      expect(policyPathRefusal('./policy.json', uid)).toBeUndefined();
      expect(policyPathRefusal('elsewhere/../policy.json', uid)).toBeUndefined();
      expect(policyPathRefusal('link/../policy.json', uid)).toMatch(`the directory ${elsewhere} on its path`);
      process.chdir(deep); // its path goes through elsewhere
      expect(policyPathRefusal('../../policy.json', uid)).toMatch(`the directory ${elsewhere} on its path`);
    } finally {
      process.chdir(cwd);
    }
  });

  it('refuses a symlink loop rather than looping', () => {
    const dir = base();
    symlinkSync('b', join(dir, 'a'));
    symlinkSync('a', join(dir, 'b'));
    expect(policyPathRefusal(join(dir, 'a'), uid)).toMatch(/^resolving it takes more than 40 symlinks \(a loop at .*\?\)$/);
  });

  it('refuses a writable directory on a read-only mount too: the root of a mount (a ConfigMap-style volume), a read-only bind (found by review)', () => {
    // In a mount namespace of its own (unshare -rm: root there, whoever runs the test): a 0777 tmpfs
    // laid out as kubelet lays out a volume, made read-only; then the check in a process inside it.
    // None of these can be told from a read-only view of a directory others write elsewhere.
    const dir = base();
    const mount = subdir(dir, 'mnt', 0o755);
    const bound = subdir(dir, 'bound', 0o777);
    writeFileSync(join(bound, 'policy.json'), '{}', { mode: 0o644 });
    const code = `
      import { policyPathRefusal } from './src/policy/file-mode.ts';
      const p = (path) => policyPathRefusal(path, process.getuid()) ?? 'accepted';
      console.log(JSON.stringify({ mountRoot: p(${JSON.stringify(join(mount, 'policy.json'))}), bound: p(${JSON.stringify(join(bound, 'policy.json'))}) }));`;
    const script = [
      `mount -t tmpfs -o mode=0777 none ${mount}`,
      `mkdir -m 0755 ${mount}/..2024_01_01 && echo '{}' > ${mount}/..2024_01_01/policy.json`,
      `ln -s ..2024_01_01 ${mount}/..data && ln -s ..data/policy.json ${mount}/policy.json`,
      `mount -o remount,ro,bind ${mount}`,
      // A read-only bind of a directory of the same file system: writable through its other path.
      `mount --bind ${bound} ${bound} && mount -o remount,ro,bind ${bound}`,
      `exec "$0" --import tsx --input-type=module -e "$1"`,
    ].join(' && ');
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', script, process.execPath, code], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      env: { ...process.env, TSX_TSCONFIG_PATH: `${PROJECT_ROOT}tsconfig.json` },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({
      mountRoot: `the directory ${mount} on its path is writable by every user, who could replace or delete the file (chmod o-w ${mount})`,
      bound: `the directory ${bound} on its path is writable by every user, who could replace or delete the file (chmod o-w ${bound})`,
    });
  });
});

describe('readPolicyFile', () => {
  it('refuses a FIFO at once instead of waiting for a writer (review by helper-132: it hung the daemon at start and at reloads)', () => {
    const dir = base();
    const fifo = join(dir, 'fifo.json');
    expect(spawnSync('mkfifo', ['-m', '0644', fifo]).status).toBe(0);
    // In a child, so that a blocking open fails the test by its timeout instead of hanging it.
    const r = runTs(`import { readPolicyFile } from ${projectModule('src/policy/index.ts')};
      console.log(JSON.stringify(readPolicyFile(${JSON.stringify(fifo)}, ${uid})));`, { timeoutMs: 20_000 });
    expect({ status: r.status, out: r.stdout.trim() }).toEqual({ status: 0, out: JSON.stringify({ state: 'refused', why: 'it is not a regular file' }) });
  }, 60_000);

  it('reads no more than MAX_POLICY_BYTES + 1 of a regular file whose size fstat understates (review by helper-136)', async () => {
    // /proc/<pid>/smaps is a regular file of st_size 0; with 12,000 mappings it holds about 9 MB
    // (a file that grows after the fstat is read alike).
    const py = spawn('python3', ['-c', "import mmap,time\nms=[mmap.mmap(-1,4096,prot=(mmap.PROT_READ if i%2 else mmap.PROT_READ|mmap.PROT_WRITE)) for i in range(12000)]\nprint('ready',flush=True)\ntime.sleep(60)"], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((r) => py.stdout.once('data', r));
      expect(readPolicyFile(`/proc/${py.pid}/smaps`, 0)).toEqual({ state: 'refused', why: `it is over ${MAX_POLICY_BYTES} bytes; a policy file is at most ${MAX_POLICY_BYTES}` });
    } finally {
      py.kill('SIGKILL');
    }
  }, 30_000);

  it('refuses a device and a file over MAX_POLICY_BYTES; reads a regular one; reports a missing one', () => {
    const dir = base();
    expect(readPolicyFile('/dev/zero', uid)).toEqual({ state: 'refused', why: 'it is not a regular file' });
    const big = join(dir, 'big.json');
    writeFileSync(big, Buffer.alloc(MAX_POLICY_BYTES + 1, 0x20), { mode: 0o644 });
    expect(readPolicyFile(big, uid)).toEqual({ state: 'refused', why: `it is ${MAX_POLICY_BYTES + 1} bytes; a policy file is at most ${MAX_POLICY_BYTES}` });
    expect(readPolicyFile(join(dir, 'policy.json'), uid)).toEqual({ state: 'read', text: '{"rules": []}', uid });
    expect(readPolicyFile(join(dir, 'none.json'), uid)).toEqual({ state: 'missing' });
  });
});
