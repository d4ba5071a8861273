/**
 * ringfenced's configuration: command-line flags > RINGFENCE_* environment > JSON config file >
 * defaults. Everything is validated up front so the daemon fails at start, naming the flag,
 * variable or file:key that is wrong, rather than misbehaving later.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { builtinSocketPath, MAX_SOCKET_PATH_BYTES } from '../rpc/socket-path.js';
import { defaultPolicyPath } from '../policy/default-path.js';
import { policyFileRefusal, policyPathRefusal } from '../policy/file-mode.js';
import { MAX_STREAM_CHUNK_BYTES } from './ciphertext/stream-format.js';
import { firstDuplicateName } from '../json/duplicate-names.js';
import { MAX_ASYNC_CALLS } from '../../native-ffi/libc.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** pino's levels. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Limits {
  maxPayloadBytes: number;
  maxAssociatedDataBytes: number;
  maxStreamChunkBytes: number;
  maxBatchItems: number;
  maxSessionInFlight: number;
  /** Milliseconds ("1h" in the config file). */
  minRotationPeriod: number;
  /** Milliseconds ("1d" in the config file). */
  minDeletionWaitingPeriod: number;
  /**
   * Encryptions per key version before a generated key rotates (imported ones refuse); at most the
   * suites' 2^32 random-nonce limit. Lowering it shortens versions' lives (and lets tests see rotation).
   */
  encryptionsPerVersion: number;
  /** Largest gRPC message received or sent (grpc.max_receive/send_message_length). */
  maxMessageBytes: number;
  /** HTTP/2 streams (calls) open at once on one connection (grpc.max_concurrent_streams). */
  maxConcurrentStreamsPerConnection: number;
  /** Connections open at once; more are closed on accept (net.Server maxConnections). */
  maxConnections: number;
  /**
   * Bytes one Session stream may hold: payloads of operations read and not yet answered, plus
   * answers not yet taken by the connection. At the cap the stream stops reading (backpressure).
   */
  maxSessionBufferedBytes: number;
  /**
   * Bytes all Sessions, crypto streams and unary CryptoService calls together may buffer
   * (api/memory-budget.ts); at the bound they stop starting work (and reading) until others'
   * answers are flushed.
   */
  maxBufferedBytes: number;
  /**
   * Of maxBufferedBytes, what the calls of one caller (one uid, SO_PEERCRED) may hold together, so
   * that one client that reads nothing cannot hold the whole budget. Default: a quarter of it.
   */
  maxBufferedBytesPerCaller: number;
  /** Of maxConnections, how many one caller (uid) may hold open. Default: a quarter of it. */
  maxConnectionsPerCaller: number;
  /**
   * HashStreams one caller (uid) may have open at once; each holds a kernel socket, and the daemon
   * opens at most 256 in all (engine.ts maxDigestStreams).
   */
  maxHashStreamsPerCaller: number;
  /**
   * Calls (HTTP/2 streams of any service) open at once in the whole daemon. Each may hold a
   * request message of up to maxMessageBytes that grpc-js reads before any handler runs, so this
   * bounds that memory; connections × streams per connection would allow far more.
   */
  maxCalls: number;
  /** Of maxCalls, how many one caller (uid) may have open at once. Default: a quarter of it. */
  maxCallsPerCaller: number;
  /**
   * Keys in the daemon, those scheduled for deletion included until they are deleted: CreateKey
   * and ImportKey beyond it are refused (RESOURCE_EXHAUSTED, KEY_LIMIT_REACHED).
   */
  maxKeys: number;
  /**
   * Of maxKeys, how many the keys one caller (uid) created or imported may be. Root and the
   * daemon's uid (administrators) are held to maxKeys only. Default: a quarter of maxKeys.
   */
  maxKeysPerCaller: number;
  /** Versions one key may have (versions are never removed): rotations beyond it are refused. */
  maxVersionsPerKey: number;
  /**
   * Key versions in the daemon, of all keys: each is a kernel key (two for encrypt-then-MAC)
   * charged to the daemon's uid, so this keeps them under its kernel key quota (sysctl.d).
   */
  maxKeyVersions: number;
  /** Of maxKeyVersions, what the keys one caller (uid) created may have together; as maxKeysPerCaller. */
  maxKeyVersionsPerCaller: number;
  /**
   * Milliseconds ("5m"; "0s" never) a connection may carry no call before the daemon closes it
   * (GOAWAY). Also what reclaims the fd of a connection that broke the HTTP/2 protocol (node stops
   * reading it after its GOAWAY, so it never sees the peer close) or that was left half-open.
   */
  connectionIdleTimeout: number;
  /** Milliseconds ("0s" = no limit); a connection is asked to go away (GOAWAY) at this age. */
  connectionMaxAge: number;
  /** Milliseconds ("1m"); calls still running this long after the max-age GOAWAY are cut off. */
  connectionMaxAgeGrace: number;
  /**
   * Keyed kernel transforms (one per key version, algorithm and tag size in use) kept open; beyond
   * it the least recently used idle one is closed, and its next use keys a new one (engine.ts).
   */
  maxTransforms: number;
  /** Kernel operation sockets per transform: requests that run at once on one key (transform.ts). */
  maxOpSockets: number;
  /** Requests that may wait for one transform's operation sockets; more are refused (DAEMON_BUSY). */
  maxQueuedRequests: number;
  /** Of maxQueuedRequests, how many one caller (uid) may have waiting for one transform. Default: a quarter of it. */
  maxQueuedRequestsPerCaller: number;
}

export interface DaemonConfig {
  readonly help: false;
  socket: string;
  socketMode: number;
  stateDir: string;
  logLevel: LogLevel;
  limits: Limits;
  /** The config file read, if any. */
  configFile: string | undefined;
  /** The access policy file (docs/policy.md); it need not exist (then only root and the daemon's uid). */
  policy: string;
}

/** What resolveConfig returns for --help: print `usage` and exit 0. */
export interface HelpRequest {
  readonly help: true;
  usage: string;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxPayloadBytes: MiB,
  maxAssociatedDataBytes: 64 * KiB,
  maxStreamChunkBytes: MiB,
  maxBatchItems: 1000,
  maxSessionInFlight: 1024,
  minRotationPeriod: HOUR,
  minDeletionWaitingPeriod: DAY,
  encryptionsPerVersion: 2 ** 32,
  maxMessageBytes: 4 * MiB + 64 * KiB,
  maxConcurrentStreamsPerConnection: 128,
  maxConnections: 1024,
  maxSessionBufferedBytes: 16 * MiB,
  maxBufferedBytes: 512 * MiB,
  maxBufferedBytesPerCaller: 128 * MiB,
  maxConnectionsPerCaller: 256,
  maxHashStreamsPerCaller: 64,
  maxCalls: 1024,
  maxCallsPerCaller: 256,
  maxKeys: 1000,
  maxKeysPerCaller: 250,
  maxVersionsPerKey: 1000,
  maxKeyVersions: 8000,
  maxKeyVersionsPerCaller: 2000,
  connectionIdleTimeout: 5 * MINUTE,
  connectionMaxAge: 0,
  connectionMaxAgeGrace: MINUTE,
  maxTransforms: 512,
  maxOpSockets: 8,
  maxQueuedRequests: 4096,
  maxQueuedRequestsPerCaller: 1024,
});

/**
 * Room in a gRPC message beyond its payload and associated data: the envelope (ciphertext header,
 * nonce, tag, stream chunk prefix), key names and protobuf framing. Streams accept chunks of
 * maxStreamChunkBytes + this much ciphertext (api/stream-handlers.ts).
 */
export const ENVELOPE_OVERHEAD_BYTES = 64 * KiB;
/** HashStreams open at once in the whole daemon (engine.ts maxDigestStreams): each holds a kernel socket. */
export const MAX_HASH_STREAMS = 256;
/** Node's setTimeout holds at most 2^31-1 ms (longer fires at once); grpc-js treats that as "no limit". */
const MAX_TIMER_MS = 24 * DAY;
/**
 * grpc-js arms the max-age timer at the age ±10 % (jitter), so the age itself must stay under
 * (2^31-1) / 1.1: at 24d about a third of connections were sent GOAWAY a millisecond after they
 * connected (found by review).
 */
const MAX_CONNECTION_AGE_MS = 22 * DAY;

// [min, max] per limit; the maxima keep one request's memory bounded.
const LIMIT_RANGES: Record<keyof Limits, readonly [number, number]> = {
  maxPayloadBytes: [1, 16 * MiB],
  maxAssociatedDataBytes: [1, MiB],
  maxStreamChunkBytes: [1, MAX_STREAM_CHUNK_BYTES],
  // At least 64: the SDK packs up to 64 Session operations into one message (PACK_OPS in
  // src/client/sdk/session-packing.ts); fewer ended every busy Session (found by review).
  maxBatchItems: [64, 100_000],
  maxSessionInFlight: [1, 65_536],
  // At least a second: every rotation writes the state (fsync) and adds a kernel key (found by review:
  // 0 let a key rotate every few milliseconds until the key quota ran out).
  minRotationPeriod: [SECOND, 3650 * DAY],
  // At most what ScheduleKeyDeletion accepts (key-manager.ts MAX_DELETION_WAIT_MS), or no deletion could succeed.
  minDeletionWaitingPeriod: [0, 365 * DAY],
  encryptionsPerVersion: [1, 2 ** 32],
  maxMessageBytes: [64 * KiB, 64 * MiB],
  maxConcurrentStreamsPerConnection: [1, 65_536],
  maxConnections: [1, 100_000],
  maxSessionBufferedBytes: [64 * KiB, 1024 * MiB],
  maxBufferedBytes: [MiB, 64 * 1024 * MiB],
  maxBufferedBytesPerCaller: [64 * KiB, 64 * 1024 * MiB],
  maxConnectionsPerCaller: [1, 100_000],
  maxHashStreamsPerCaller: [1, MAX_HASH_STREAMS],
  maxCalls: [1, 1_000_000],
  maxCallsPerCaller: [1, 1_000_000],
  maxKeys: [1, 1_000_000],
  maxKeysPerCaller: [1, 1_000_000],
  maxVersionsPerKey: [1, 1_000_000],
  maxKeyVersions: [1, 10_000_000],
  maxKeyVersionsPerCaller: [1, 10_000_000],
  connectionIdleTimeout: [0, MAX_TIMER_MS],
  connectionMaxAge: [0, MAX_CONNECTION_AGE_MS],
  connectionMaxAgeGrace: [0, MAX_TIMER_MS],
  // Each transform holds a socket, and up to maxOpSockets more while idle: the fds and kernel
  // memory these allow are the operator's to size (docs/operations.md, "Kernel sockets").
  maxTransforms: [1, 65_536],
  // At most MAX_ASYNC_CALLS (native-ffi/libc.ts) kernel calls run at once in the whole daemon:
  // more sockets per key would only hold fds and socket buffers, never run more at once.
  maxOpSockets: [1, MAX_ASYNC_CALLS],
  maxQueuedRequests: [1, 65_536],
  maxQueuedRequestsPerCaller: [1, 65_536],
};
const DURATION_LIMITS = new Set<keyof Limits>(['minRotationPeriod', 'minDeletionWaitingPeriod', 'connectionIdleTimeout', 'connectionMaxAge', 'connectionMaxAgeGrace']);
const FILE_KEYS = ['socket', 'stateDir', 'logLevel', 'socketMode', 'limits', 'policy'] as const;

export const USAGE = `Usage: ringfenced [--socket PATH] [--state-dir DIR] [--config FILE] [--policy FILE] [--log-level LEVEL] [--help]

  --socket PATH      Unix socket to serve gRPC on (env RINGFENCE_SOCKET;
                     default /run/ringfence/ringfence.sock as root, else $XDG_RUNTIME_DIR/ringfence.sock)
  --state-dir DIR    state directory (env RINGFENCE_STATE_DIR;
                     default /var/lib/ringfence as root, else $XDG_STATE_HOME/ringfence,
                     ~/.local/state/ringfence if unset)
  --policy FILE      access policy, JSON (env RINGFENCE_POLICY; default /etc/ringfence/policy.json
                     as root, else $XDG_CONFIG_HOME/ringfence/policy.json, ~/.config/ringfence/
                     policy.json if unset); reloaded on SIGHUP and
                     on change; without it only root and the daemon's uid may use ringfenced
  --config FILE      JSON config file (env RINGFENCE_CONFIG): socket, stateDir, logLevel, policy,
                     socketMode ("0660" as root, else "0600"), limits { maxPayloadBytes, maxAssociatedDataBytes,
                     maxStreamChunkBytes, maxBatchItems, maxSessionInFlight,
                     minRotationPeriod ("1h"), minDeletionWaitingPeriod ("1d"),
                     encryptionsPerVersion (4294967296), maxMessageBytes (4259840),
                     maxConcurrentStreamsPerConnection (128), maxConnections (1024),
                     maxSessionBufferedBytes (16777216), maxBufferedBytes (536870912),
                     maxBufferedBytesPerCaller (a quarter of maxBufferedBytes),
                     maxConnectionsPerCaller (a quarter of maxConnections),
                     maxHashStreamsPerCaller (64), maxCalls (1024),
                     maxCallsPerCaller (a quarter of maxCalls), maxKeys (1000),
                     maxKeysPerCaller (a quarter of maxKeys), maxVersionsPerKey (1000),
                     maxKeyVersions (8000), maxKeyVersionsPerCaller (a quarter of maxKeyVersions),
                     connectionIdleTimeout ("5m"; "0s" never), connectionMaxAge ("0s" = none),
                     connectionMaxAgeGrace ("1m"), maxTransforms (512), maxOpSockets (8),
                     maxQueuedRequests (4096),
                     maxQueuedRequestsPerCaller (a quarter of maxQueuedRequests) }
                     (docs/operations.md, "Limits")
  --log-level LEVEL  ${LOG_LEVELS.join(', ')} (env RINGFENCE_LOG_LEVEL; default info):
                     the diagnostic lines' level; the audit trail is written at every level
  --help             print this and exit

Exit status: 0 after a drained stop (SIGTERM, SIGINT) or --help; 1 when it cannot start (the
reason on stderr); 2 for a bad flag or config file; 143 or 130 for a second signal during the drain.
`;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY };

/** "90s", "1h30m", "7d" → milliseconds. Units: ms s m h d. Throws Error on anything else. */
export function parseDuration(s: string): number {
  if (typeof s !== 'string' || !/^(?:\d+(?:ms|s|m|h|d))+$/.test(s)) {
    throw new Error(`invalid duration ${JSON.stringify(s)}: expected e.g. "500ms", "30s", "15m", "1h", "7d" or "1h30m"`);
  }
  let total = 0;
  for (const [, n, unit] of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * DURATION_UNITS[unit!]!;
  if (!Number.isSafeInteger(total)) throw new Error(`duration ${JSON.stringify(s)} is too large`);
  return total;
}

/**
 * Resolves the daemon's configuration. Returns a HelpRequest for --help (nothing else is read
 * then); throws ConfigError for anything invalid. Relative paths from flags and the environment
 * are resolved against the working directory, those in the config file against the file's directory.
 */
export function resolveConfig(argv: string[], env: NodeJS.ProcessEnv, uid: number = process.getuid!()): DaemonConfig | HelpRequest {
  let flags;
  try {
    flags = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        policy: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${USAGE}`);
  }
  if (flags.help) return { help: true, usage: USAGE };

  // A value and where it came from, for error messages.
  type Src<T> = { value: T; where: string };
  const pick = (flag: string, envName: string): Src<string> | undefined => {
    const fromFlag = (flags as Record<string, string | undefined>)[flag];
    if (fromFlag !== undefined) {
      if (fromFlag === '') throw new ConfigError(`--${flag} must not be empty`);
      return { value: fromFlag, where: `--${flag}` };
    }
    // An empty variable counts as unset, as shells make that easy to do by accident.
    const fromEnv = env[envName];
    return fromEnv ? { value: fromEnv, where: envName } : undefined;
  };

  const configArg = pick('config', 'RINGFENCE_CONFIG');
  const configFile = configArg ? resolve(configArg.value) : undefined;
  const file = configFile ? readConfigFile(configFile, configArg!.where, uid) : {};
  const fileSrc = (key: string): string => `${configFile}:${key}`;
  const fileString = (key: 'socket' | 'stateDir' | 'logLevel' | 'socketMode' | 'policy'): Src<string> | undefined => {
    const v = file[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new ConfigError(`${fileSrc(key)} must be a non-empty string`);
    return { value: v, where: fileSrc(key) };
  };
  const filePath = (key: 'socket' | 'stateDir' | 'policy'): string | undefined => {
    const v = fileString(key);
    // Flags and variables cannot hold one; JSON can ("\u0000"), and every fs call would then throw
    // at start-up with a message naming neither the file nor the key, and exit 1 (not 2).
    if (v?.value.includes('\0')) throw new ConfigError(`${v.where}: a path must not contain a NUL character`);
    return v && resolve(dirname(configFile!), v.value);
  };

  // The whole file is validated even where flags or the environment override it, so that a
  // mistake in it does not surface only once the override is gone.
  const fileSocket = filePath('socket');
  if (fileSocket !== undefined) checkSocketLength(fileSocket, fileSrc('socket'));
  const fileStateDir = filePath('stateDir');
  const filePolicy = filePath('policy');
  const fileLevelArg = fileString('logLevel');
  const fileLevel = fileLevelArg && checkLogLevel(fileLevelArg);
  const fileModeArg = fileString('socketMode');
  const fileMode = fileModeArg && parseMode(fileModeArg);
  const limits = parseLimits(file.limits, fileSrc('limits'));

  const socketArg = pick('socket', 'RINGFENCE_SOCKET');
  let socket = socketArg ? resolve(socketArg.value) : fileSocket;
  let socketWhere = socketArg?.where ?? fileSrc('socket');
  if (socket === undefined) {
    try {
      socket = builtinSocketPath(env, uid);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    socketWhere = 'the default socket path';
  }
  checkSocketLength(socket, socketWhere);

  const stateArg = pick('state-dir', 'RINGFENCE_STATE_DIR');
  const stateDir = stateArg ? resolve(stateArg.value) : fileStateDir ?? defaultStateDir(env, uid);

  const levelArg = pick('log-level', 'RINGFENCE_LOG_LEVEL');
  const logLevel = levelArg ? checkLogLevel(levelArg) : fileLevel ?? 'info';
  const socketMode = fileMode ?? (uid === 0 ? 0o660 : 0o600);
  const policyArg = pick('policy', 'RINGFENCE_POLICY');
  const policy = policyArg ? resolve(policyArg.value) : filePolicy ?? policyPath(env, uid);
  return { help: false, socket, socketMode, stateDir, logLevel, limits, configFile, policy };
}

function checkSocketLength(socket: string, where: string): void {
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(`${where}: socket path ${socket} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the Unix socket limit`);
  }
}

function policyPath(env: NodeJS.ProcessEnv, uid: number): string {
  const path = defaultPolicyPath(env, uid);
  if (path === undefined) throw new ConfigError(`cannot choose a policy file for uid ${uid}: neither XDG_CONFIG_HOME nor HOME is set to an absolute path; set --policy or RINGFENCE_POLICY`);
  return path;
}

function defaultStateDir(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0) return '/var/lib/ringfence';
  const xdg = env.XDG_STATE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'ringfence');
  if (!env.HOME || !isAbsolute(env.HOME)) {
    throw new ConfigError(`cannot choose a state directory for uid ${uid}: neither XDG_STATE_HOME nor HOME is set to an absolute path; set --state-dir or RINGFENCE_STATE_DIR`);
  }
  return join(env.HOME, '.local', 'state', 'ringfence');
}

/** Far more than any config needs: a larger file is a mistake (a log, a disk image), not read. */
const MAX_CONFIG_BYTES = 1024 * 1024;

function readConfigFile(path: string, where: string, uid: number): Record<string, unknown> {
  // The file names the policy file and the state directory: whoever may write it could point the
  // daemon at an older policy (undoing a revocation) or state, so it is held to the policy file's
  // rules on who may write it and what leads to it (policy/file-mode.ts; found by review).
  const pathRefusal = policyPathRefusal(path, uid, 'the config file');
  if (pathRefusal) throw new ConfigError(`config file ${path} (from ${where}) is refused: ${pathRefusal}`);
  let text: string;
  let fd: number | undefined;
  try {
    // Non-blocking, and only a regular file (found by review): a FIFO would hang the start waiting
    // for a writer, and /dev/zero would be read until memory ran out.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(`config file ${path} (from ${where}) is not a regular file`);
    const refusal = policyFileRefusal(st, uid);
    if (refusal) throw new ConfigError(`config file ${path} (from ${where}) is refused: ${refusal}`);
    if (st.size > MAX_CONFIG_BYTES) throw new ConfigError(`config file ${path} (from ${where}) is ${st.size} bytes; a config file is at most ${MAX_CONFIG_BYTES}`);
    text = readFileSync(fd, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`config file ${path} (from ${where}) cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  // JSON.parse keeps the last of a repeated name: the file would not mean what it reads as.
  const repeated = firstDuplicateName(text);
  if (repeated) throw new ConfigError(`${path}:${repeated.path}: given twice (again at ${repeated.at}); remove one`);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ConfigError(`config file ${path} must contain a JSON object`);
  }
  for (const key of Object.keys(doc)) {
    if (!(FILE_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(`${path}:${key}: unknown key (known: ${FILE_KEYS.join(', ')})`);
    }
  }
  return doc as Record<string, unknown>;
}

function checkLogLevel({ value, where }: { value: string; where: string }): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new ConfigError(`${where}: log level ${JSON.stringify(value)} is not one of ${LOG_LEVELS.join(', ')}`);
  }
  return value as LogLevel;
}

function parseMode({ value, where }: { value: string; where: string }): number {
  // A string, so that "0660" cannot be mistaken for the decimal number 660.
  if (!/^0?[0-7]{3}$/.test(value)) {
    throw new ConfigError(`${where}: ${JSON.stringify(value)} is not an octal permission string like "0660"`);
  }
  const mode = parseInt(value, 8);
  if ((mode & 0o600) !== 0o600) throw new ConfigError(`${where}: mode ${value} must give the owner read and write (0600)`);
  return mode;
}

/** Per-caller limits that default to a quarter of a daemon-wide one: [part, whole, smallest default]. */
const PER_CALLER: ReadonlyArray<readonly [keyof Limits, keyof Limits, number]> = [
  ['maxBufferedBytesPerCaller', 'maxBufferedBytes', 64 * KiB],
  ['maxConnectionsPerCaller', 'maxConnections', 1],
  ['maxCallsPerCaller', 'maxCalls', 1],
  ['maxKeysPerCaller', 'maxKeys', 1],
  ['maxKeyVersionsPerCaller', 'maxKeyVersions', 1],
  ['maxQueuedRequestsPerCaller', 'maxQueuedRequests', 1],
];

function parseLimits(raw: unknown, where: string): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  if (raw === undefined) return limits;
  const set = new Set<keyof Limits>();
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where} must be a JSON object`);
  for (const [key, value] of Object.entries(raw)) {
    const at = `${where}.${key}`;
    // Own keys only: `in` would also find toString, constructor, __proto__.
    if (!Object.hasOwn(LIMIT_RANGES, key)) throw new ConfigError(`${at}: unknown key (known: ${Object.keys(LIMIT_RANGES).join(', ')})`);
    const k = key as keyof Limits;
    const [min, max] = LIMIT_RANGES[k];
    let n: number;
    if (DURATION_LIMITS.has(k)) {
      if (typeof value !== 'string') throw new ConfigError(`${at} must be a duration string like "1h" or "7d"`);
      try {
        n = parseDuration(value);
      } catch (err) {
        throw new ConfigError(`${at}: ${(err as Error).message}`);
      }
      if (n < min) throw new ConfigError(`${at}: ${value} is less than the minimum of ${min / SECOND}s`);
      if (n > max) throw new ConfigError(`${at}: ${value} is more than the maximum of ${max / DAY}d`);
    } else {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
        throw new ConfigError(`${at} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
      }
      n = value;
    }
    limits[k] = n;
    set.add(k);
  }
  // A caller's part follows its whole unless set; set, it must fit in it.
  for (const [part, whole, floor] of PER_CALLER) {
    if (!set.has(part)) limits[part] = Math.max(floor, Math.floor(limits[whole] / 4));
    else if (limits[part] > limits[whole]) {
      throw new ConfigError(`${where}.${part}: ${limits[part]} is more than ${whole} (${limits[whole]}); a caller's part cannot exceed the whole`);
    }
  }
  const needed = minMessageBytes(limits);
  if (limits.maxMessageBytes < needed) {
    throw new ConfigError(
      `${where}.maxMessageBytes: ${limits.maxMessageBytes} is too small for the payload limits: a message must hold max(maxPayloadBytes, maxStreamChunkBytes) + maxAssociatedDataBytes + ${ENVELOPE_OVERHEAD_BYTES} bytes of envelope, at least ${needed}`,
    );
  }
  return limits;
}

/**
 * The most one kernel request takes: the largest payload or stream chunk with its associated data
 * and envelope (header, chunk prefix, tag). Without the associated data, an Encrypt within every
 * limit was refused once maxAssociatedDataBytes was raised past 128 KiB (review by helper-116).
 */
export function engineRequestBytes(l: Pick<Limits, 'maxPayloadBytes' | 'maxStreamChunkBytes' | 'maxAssociatedDataBytes'>): number {
  return Math.max(4 * MiB, minMessageBytes(l));
}

/** The smallest maxMessageBytes that carries the largest request or response the other limits allow. */
export function minMessageBytes(l: Pick<Limits, 'maxPayloadBytes' | 'maxStreamChunkBytes' | 'maxAssociatedDataBytes'>): number {
  return Math.max(l.maxPayloadBytes, l.maxStreamChunkBytes) + l.maxAssociatedDataBytes + ENVELOPE_OVERHEAD_BYTES;
}
