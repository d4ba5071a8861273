/**
 * The master key that wraps every key generated in the kernel. It comes from systemd credentials
 * (LoadCredential= / LoadCredentialEncrypted=, in $CREDENTIALS_DIRECTORY) when given there, else
 * from <stateDir>/master.key, which is created on first start. Losing it loses every generated key.
 *
 * Decoding works on bytes, never strings: a JS string of key material cannot be wiped.
 */
import { randomFillSync, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readlink, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { policyFileRefusal, policyPathRefusal } from '../../policy/file-mode.js';

export const MASTER_KEY_FILE = 'master.key';
export const MASTER_KEY_BYTES = 32;
/** The longest accepted file: 64 hex digits and a newline. */
const MAX_FILE_BYTES = 2 * MASTER_KEY_BYTES + 1;
const BASE64_CHARS = 44; // 43 significant characters and one "="

export type Log = (msg: string, fields?: object) => void;

export interface MasterKey {
  /** 32 bytes; the caller owns it and must wipe it (fill(0)) once the kernel has it. */
  material: Buffer;
  source: 'credentials' | 'state-dir';
  path: string;
  created: boolean;
}

export interface MasterKeyOptions {
  stateDir: string;
  /** Default: $CREDENTIALS_DIRECTORY. An empty string means none. */
  credentialsDirectory?: string;
  /**
   * Set when the state directory already holds data wrapped by a master key (e.g. "state.json holds
   * 3 keys"): a missing master.key is then an error, never replaced by a new key that opens nothing.
   */
  requiredBy?: string;
  log?: Log;
}

const FORMATS =
  'accepted: exactly 32 raw bytes, 64 hex digits, or base64 of 32 bytes (44 characters), each optionally followed by one newline';

/**
 * Loads the master key from the credentials directory, else from <stateDir>/master.key, creating
 * the latter (32 random bytes, mode 0600) if missing. Refuses a key whose path another uid could
 * change (policyPathRefusal, symlinks followed), a state-dir key that group or others may access,
 * and any file in no accepted format; messages never include the file's contents.
 */
export async function loadOrCreateMasterKey(opts: MasterKeyOptions): Promise<MasterKey> {
  const log = opts.log ?? (() => {});
  const credDir = opts.credentialsDirectory ?? process.env.CREDENTIALS_DIRECTORY;
  if (credDir) {
    const path = join(credDir, MASTER_KEY_FILE);
    const material = await readKeyFile(path, 'credential');
    if (material) {
      await removeCopiesBeside(material, opts.stateDir, log);
      return { material, source: 'credentials', path, created: false };
    }
    log(`no ${MASTER_KEY_FILE} credential in the credentials directory; using the state directory`, { credentialsDirectory: credDir });
  }

  const path = join(opts.stateDir, MASTER_KEY_FILE);
  for (;;) {
    const existing = await readKeyFile(path, 'private');
    if (existing) {
      // Once master.key is read, not only when creating one: a kill -9 between link and unlink
      // leaves a temp that is a second name of master.key, which would outlive an operator
      // removing master.key. Never while master.key is missing: such a temp may be its last copy.
      await removeDeadTemps(opts.stateDir);
      return { material: existing, source: 'state-dir', path, created: false };
    }
    if (opts.requiredBy) {
      throw new Error(
        `${path} is missing, but ${opts.requiredBy} wrapped by it: restore master.key from your backup (mode 0600) or provide it as the systemd credential master.key; to start empty instead, move the state directory away. Nothing was changed`,
      );
    }
    const material = await createKeyFile(opts.stateDir, path);
    if (material) {
      log(`created a new master key at ${path}; back it up together with the state directory, without it the keys saved there cannot be recovered`, { path });
      return { material, source: 'state-dir', path, created: true };
    }
    // Another process created it since we looked: read theirs.
  }
}

/**
 * What the daemon says when the master key does not open the saved keys (KeystoreError
 * MASTER_KEY_MISMATCH while loading them): which files disagree and what to do.
 */
export function masterKeyMismatchMessage(masterPath: string, statePath: string, detail: string): string {
  return `MASTER_KEY_MISMATCH: the master key ${masterPath} does not open the keys in ${statePath}: it is not the key they were saved with (${detail}). Restore the master.key that belongs to this state directory from your backup; both files were left untouched`;
}

let tmpCounter = 0;

/**
 * A new random key written durably to `path` (mode 0600), or undefined if `path` already exists.
 * The key is written to a temp file and linked into place (exclusive, like O_EXCL), so nobody ever
 * reads a partial key and a crash mid-write leaves no master.key that the next start would refuse.
 */
async function createKeyFile(dir: string, path: string): Promise<Buffer | undefined> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await removeDeadTemps(dir);
  const tmp = `${path}${TMP_INFIX}${process.pid}-${tmpCounter++}`;
  const material = randomFillSync(Buffer.alloc(MASTER_KEY_BYTES));
  ownTemps.add(tmp);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(material);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      material.fill(0);
      return undefined;
    }
    await unlink(tmp);
    await fsyncDir(dir);
    return material;
  } catch (err) {
    material.fill(0);
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
    ownTemps.delete(tmp);
  }
}

const TMP_INFIX = '.tmp-';
/**
 * Only names of the form createKeyFile writes (`master.key.tmp-<pid>-<n>`, always both numbers) are
 * temps: an operator's `master.key.tmp-backup` or `master.key.tmp-20240101` may be a copy of the key
 * and is kept (review by helper-177, helper-187).
 */
const TMP_NAME = /^master\.key\.tmp-(\d+)-\d+$/;
/** Temp files this process is writing now. */
const ownTemps = new Set<string>();

/**
 * Temp files of processes that died while creating a key: a never-used key, or a second name of
 * master.key (a crash between link and unlink). One with this process's pid is an earlier process
 * that had the same pid (pid 1 in a container), unless this process is writing it now. Those for
 * which `removable` says no are kept.
 */
async function removeDeadTemps(dir: string, removable: (path: string) => Promise<boolean> = async () => true): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    const m = TMP_NAME.exec(name);
    if (!m || ownTemps.has(join(dir, name))) continue;
    const pid = Number(m[1]);
    if (pid > 0 && pid !== process.pid && pidAlive(pid)) continue;
    if (await removable(join(dir, name))) await unlink(join(dir, name)).catch(() => {});
  }
}

/**
 * The state-dir temps left by an interrupted creation, when the key comes from a credential. The
 * state-dir start that would remove them may never come: an operator who moved master.key into an
 * (encrypted) credential and removed it, as docs/operations.md says, kept a plain copy of the key
 * on disk in a temp left linked to it. One is removed when it holds the credential's key (the
 * credential keeps it) or, as in state-dir mode, when master.key is there to read (the temp is a
 * second name of it or a key never used). Any other may be the last copy of an earlier key: kept,
 * and logged.
 */
async function removeCopiesBeside(credential: Buffer, stateDir: string, log: Log): Promise<void> {
  let stateKeyThere: boolean | undefined;
  await removeDeadTemps(stateDir, async (path) => {
    if (await holdsKey(path, credential)) {
      log(`removed ${path}, a copy of the master key left by an interrupted creation in the state directory`, { path });
      return true;
    }
    stateKeyThere ??= await readKeyFile(join(stateDir, MASTER_KEY_FILE), 'private').then(
      (key) => (key?.fill(0), key !== undefined),
      () => false,
    );
    if (stateKeyThere) return true;
    log(`kept ${path}, left by an interrupted master-key creation: it is not the credential's key and may be the last copy of an earlier one; remove it once you know no keys need it`, { path });
    return false;
  });
}

/** Whether the file holds `key` in an accepted format (false if it cannot be read). */
async function holdsKey(path: string, key: Buffer): Promise<boolean> {
  const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
  let fh: FileHandle | undefined;
  let found: Buffer | undefined;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
    if (!(await fh.stat()).isFile()) return false;
    const len = await readUpTo(fh, buf);
    found = decodeKey(buf.subarray(0, len));
    return found !== undefined && timingSafeEqual(found, key);
  } catch {
    return false;
  } finally {
    buf.fill(0);
    found?.fill(0);
    await fh?.close();
  }
}

async function readUpTo(fh: FileHandle, buf: Buffer): Promise<number> {
  let len = 0;
  while (len < buf.length) {
    const { bytesRead } = await fh.read(buf, len, buf.length - len, null);
    if (bytesRead === 0) break;
    len += bytesRead;
  }
  return len;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The decoded key, or undefined if the file does not exist. Whoever may change a name on the path
 * to it could delete the key (every generated key with it) or swap in another, also where a
 * symlinked master.key leads (review by helper-203): the path is held to the policy file's rules.
 * A `private` (state-dir) file must be the daemon's own and private; a `credential` only written
 * by root or the daemon's uid, as systemd makes it (0400, owned by root or the service's user,
 * maybe readable through an ACL or group): its readers are systemd's to judge.
 */
async function readKeyFile(path: string, kind: 'private' | 'credential'): Promise<Buffer | undefined> {
  const uid = process.getuid?.();
  const refused = (why: string) => new Error(`master key ${path} is refused: ${why}; nothing was changed`);
  const checkPath = () => {
    const refusal = policyPathRefusal(path, uid, 'the master key');
    if (refusal) throw refused(refusal);
  };
  checkPath();
  let fh: FileHandle;
  try {
    // Without blocking: a FIFO there must not hang the start.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    // A symlink to a missing file (a volume not mounted yet): not a missing key. Taken as one, a new
    // key could never be linked in its place, and start-up looped making keys (review by helper-91).
    const entry = await lstat(path).catch(() => undefined);
    if (entry?.isSymbolicLink()) throw new Error(`master key ${path} is a symlink to ${await readlink(path).catch(() => '?')}, which does not exist (a volume not mounted yet?); nothing was changed`);
    return undefined;
  }
  const buf = Buffer.alloc(MAX_FILE_BYTES + 1); // one more, to tell a longer file
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new Error(`master key ${path} is not a regular file`);
    const mode = Number(st.mode);
    if (kind === 'private' && mode & 0o077) {
      throw new Error(`master key ${path} is accessible by group or others (mode 0${(mode & 0o777).toString(8)}); run chmod 600 ${path}`);
    }
    // Its owner could read or replace it (a backup restored with numeric owners, say).
    if (kind === 'private' && uid !== undefined && Number(st.uid) !== uid) {
      throw new Error(`master key ${path} is owned by uid ${st.uid}, not by the daemon's uid ${uid}; run chown ${uid} ${path} if that is right`);
    }
    const fileRefusal = kind === 'credential' ? policyFileRefusal({ mode, uid: Number(st.uid) }, uid) : undefined;
    if (fileRefusal) throw refused(fileRefusal);
    // Again, now that every name exists: one another uid added in a sticky directory after the
    // first check (and maybe removed since) must not have chosen the file read.
    checkPath();
    const named = await stat(path, { bigint: true }).catch(() => undefined);
    if (named?.dev !== st.dev || named.ino !== st.ino) throw refused('it was replaced while it was read; start again');
    const len = await readUpTo(fh, buf);
    const key = decodeKey(buf.subarray(0, len));
    if (!key) throw new Error(`master key ${path} is not in an accepted format (${len > MAX_FILE_BYTES ? 'too long' : `${len} bytes`}); ${FORMATS}`);
    return key;
  } finally {
    buf.fill(0);
    await fh.close();
  }
}

/**
 * Decodes a key file's bytes into a fresh 32-byte Buffer, or undefined if they are in no accepted
 * form. Exported for tests.
 */
export function decodeKey(data: Buffer): Buffer | undefined {
  // Raw first: 32 raw bytes may well end in 0x0a, and no text form is 32 or 33 bytes long.
  if (data.length === MASTER_KEY_BYTES) return Buffer.from(data);
  const text = data.at(-1) === 0x0a ? data.subarray(0, -1) : data;
  if (data.length === MASTER_KEY_BYTES + 1 && text.length === MASTER_KEY_BYTES) return Buffer.from(text);
  const out = Buffer.alloc(MASTER_KEY_BYTES);
  const ok =
    text.length === 2 * MASTER_KEY_BYTES ? decodeHex(text, out) : text.length === BASE64_CHARS ? decodeBase64(text, out) : false;
  if (ok) return out;
  out.fill(0);
  return undefined;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30; // 0-9
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10; // a-f, A-F
  return -1;
}

function decodeHex(text: Buffer, out: Buffer): boolean {
  for (let i = 0; i < out.length; i++) {
    const hi = hexValue(text[2 * i]!);
    const lo = hexValue(text[2 * i + 1]!);
    if (hi < 0 || lo < 0) return false;
    out[i] = (hi << 4) | lo;
  }
  return true;
}

function base64Value(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41; // A-Z
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26; // a-z
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52; // 0-9
  if (c === 0x2b) return 62; // +
  if (c === 0x2f) return 63; // /
  return -1;
}

/** Standard base64 of exactly 32 bytes: 43 characters, then "=", the 2 spare bits zero. */
function decodeBase64(text: Buffer, out: Buffer): boolean {
  if (text[BASE64_CHARS - 1] !== 0x3d) return false;
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < BASE64_CHARS - 1; i++) {
    const v = base64Value(text[i]!);
    if (v < 0) return false;
    acc = ((acc << 6) | v) & 0xfff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  const canonical = (acc & ((1 << bits) - 1)) === 0;
  acc = 0;
  return canonical && o === MASTER_KEY_BYTES;
}
