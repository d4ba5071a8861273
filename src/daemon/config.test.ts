import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, minMessageBytes, parseDuration, resolveConfig, type DaemonConfig } from './config.js';
import { serverOptions } from './daemon.js';
import { defaultSocketPath } from '../rpc/socket-path.js';
import { PACK_OPS } from '../client/sdk/session-packing.js';

const tmp = mkdtempSync(join(tmpdir(), 'ringfence-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function configFile(doc: unknown): string {
  const path = join(tmp, `c${n++}.json`);
  // 0644 whatever the umask: the daemon refuses a group-writable config file.
  writeFileSync(path, typeof doc === 'string' ? doc : JSON.stringify(doc), { mode: 0o644 });
  chmodSync(path, 0o644);
  return path;
}

const USER_ENV = { XDG_RUNTIME_DIR: '/run/user/1000', HOME: '/home/u' };

function resolved(argv: string[], env: NodeJS.ProcessEnv = {}, uid = 0): DaemonConfig {
  const r = resolveConfig(argv, env, uid);
  if (r.help) throw new Error('unexpected help');
  return r;
}

function configError(argv: string[], env: NodeJS.ProcessEnv = {}, uid = 0): ConfigError {
  try {
    resolveConfig(argv, env, uid);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('resolveConfig did not throw');
}

describe('parseDuration', () => {
  it('parses each unit and compounds', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('0s')).toBe(0);
  });

  it('rejects anything else', () => {
    for (const bad of ['', '1', 'h', '1.5h', '-1h', '1 h', '1w', '1H', ' 1h', '1h ']) {
      expect(() => parseDuration(bad), bad).toThrow(/invalid duration/);
    }
    expect(() => parseDuration('99999999999999999d')).toThrow(/too large/);
  });
});

describe('resolveConfig defaults', () => {
  it('as root', () => {
    expect(resolved([], {}, 0)).toEqual({
      help: false,
      socket: '/run/ringfence/ringfence.sock',
      socketMode: 0o660,
      stateDir: '/var/lib/ringfence',
      logLevel: 'info',
      limits: {
        maxPayloadBytes: 1048576,
        maxAssociatedDataBytes: 65536,
        maxStreamChunkBytes: 1048576,
        maxBatchItems: 1000,
        maxSessionInFlight: 1024,
        minRotationPeriod: 3_600_000,
        minDeletionWaitingPeriod: 86_400_000,
        encryptionsPerVersion: 4_294_967_296,
        maxMessageBytes: 4 * 1024 * 1024 + 65_536,
        maxConcurrentStreamsPerConnection: 128,
        maxConnections: 1024,
        maxSessionBufferedBytes: 16 * 1024 * 1024,
        maxBufferedBytes: 512 * 1024 * 1024,
        maxBufferedBytesPerCaller: 128 * 1024 * 1024,
        maxConnectionsPerCaller: 256,
        maxHashStreamsPerCaller: 64,
        maxCalls: 1024,
        maxCallsPerCaller: 256,
        maxKeys: 1000,
        maxKeysPerCaller: 250,
        maxVersionsPerKey: 1000,
        maxKeyVersions: 8000,
        maxKeyVersionsPerCaller: 2000,
        connectionIdleTimeout: 300_000,
        connectionMaxAge: 0,
        connectionMaxAgeGrace: 60_000,
        maxTransforms: 512,
        maxOpSockets: 8,
        maxQueuedRequests: 4096,
        maxQueuedRequestsPerCaller: 1024,
      },
      configFile: undefined,
      policy: '/etc/ringfence/policy.json',
    });
  });

  it('per-caller limits default to a quarter of their daemon-wide limit, and may not exceed it', () => {
    const l = resolved(['--config', configFile({ limits: { maxBufferedBytes: 8 * 1024 * 1024, maxConnections: 2 } })]).limits;
    expect([l.maxBufferedBytesPerCaller, l.maxConnectionsPerCaller, l.maxHashStreamsPerCaller]).toEqual([2 * 1024 * 1024, 1, 64]);
    const set = resolved(['--config', configFile({ limits: { maxBufferedBytesPerCaller: 512 * 1024 * 1024, maxConnectionsPerCaller: 1024, maxHashStreamsPerCaller: 256 } })]).limits;
    expect([set.maxBufferedBytesPerCaller, set.maxConnectionsPerCaller, set.maxHashStreamsPerCaller]).toEqual([512 * 1024 * 1024, 1024, 256]);
    expect(configError(['--config', configFile({ limits: { maxConnections: 10, maxConnectionsPerCaller: 11 } })]).message).toMatch(
      /limits\.maxConnectionsPerCaller: 11 is more than maxConnections \(10\); a caller's part cannot exceed the whole/,
    );
    expect(configError(['--config', configFile({ limits: { maxBufferedBytes: 1024 * 1024, maxBufferedBytesPerCaller: 2 * 1024 * 1024 } })]).message).toMatch(/maxBufferedBytesPerCaller: 2097152 is more than maxBufferedBytes/);
    expect(configError(['--config', configFile({ limits: { maxHashStreamsPerCaller: 257 } })]).message).toMatch(/maxHashStreamsPerCaller must be an integer from 1 to 256/);
  });

  it('maxCallsPerCaller: a quarter of maxCalls unless set, at least 1, at most maxCalls', () => {
    expect(resolved(['--config', configFile({ limits: { maxCalls: 2048 } })]).limits.maxCallsPerCaller).toBe(512);
    expect(resolved(['--config', configFile({ limits: { maxCalls: 3 } })]).limits.maxCallsPerCaller).toBe(1);
    const set = resolved(['--config', configFile({ limits: { maxCalls: 100, maxCallsPerCaller: 100 } })]).limits;
    expect([set.maxCalls, set.maxCallsPerCaller]).toEqual([100, 100]);
    expect(resolved(['--config', configFile({ limits: { maxCallsPerCaller: 1000 } })]).limits).toMatchObject({ maxCalls: 1024, maxCallsPerCaller: 1000 });
    expect(configError(['--config', configFile({ limits: { maxCallsPerCaller: 1025 } })]).message).toMatch(/limits\.maxCallsPerCaller: 1025 is more than maxCalls \(1024\); a caller's part cannot exceed the whole/);
    expect(configError(['--config', configFile({ limits: { maxCalls: 0 } })]).message).toMatch(/limits\.maxCalls must be an integer from 1 to 1000000 \(got 0\)/);
    expect(configError(['--config', configFile({ limits: { maxCallsPerCaller: '8' } })]).message).toMatch(/limits\.maxCallsPerCaller must be an integer from 1 to 1000000/);
  });

  it('caps on keys and versions: per-caller parts a quarter of the whole unless set, at most the whole', () => {
    const l = resolved(['--config', configFile({ limits: { maxKeys: 10, maxKeyVersions: 3, maxVersionsPerKey: 5 } })]).limits;
    expect([l.maxKeys, l.maxKeysPerCaller, l.maxVersionsPerKey, l.maxKeyVersions, l.maxKeyVersionsPerCaller]).toEqual([10, 2, 5, 3, 1]);
    const set = resolved(['--config', configFile({ limits: { maxKeysPerCaller: 1000, maxKeyVersionsPerCaller: 8000 } })]).limits;
    expect([set.maxKeysPerCaller, set.maxKeyVersionsPerCaller]).toEqual([1000, 8000]);
    expect(configError(['--config', configFile({ limits: { maxKeysPerCaller: 1001 } })]).message).toMatch(/limits\.maxKeysPerCaller: 1001 is more than maxKeys \(1000\); a caller's part cannot exceed the whole/);
    expect(configError(['--config', configFile({ limits: { maxKeyVersions: 100, maxKeyVersionsPerCaller: 101 } })]).message).toMatch(/limits\.maxKeyVersionsPerCaller: 101 is more than maxKeyVersions \(100\)/);
    expect(configError(['--config', configFile({ limits: { maxVersionsPerKey: 0 } })]).message).toMatch(/limits\.maxVersionsPerKey must be an integer from 1 to 1000000 \(got 0\)/);
    expect(configError(['--config', configFile({ limits: { maxKeys: '5' } })]).message).toMatch(/limits\.maxKeys must be an integer from 1 to 1000000/);
  });

  it('kernel transforms, sockets and queues: defaults as the engine had them, settable, the per-caller queue a quarter of the whole unless set', () => {
    expect(resolved([]).limits).toMatchObject({ maxTransforms: 512, maxOpSockets: 8, maxQueuedRequests: 4096, maxQueuedRequestsPerCaller: 1024 });
    const set = resolved(['--config', configFile({ limits: { maxTransforms: 2048, maxOpSockets: 32, maxQueuedRequests: 100 } })]).limits;
    expect([set.maxTransforms, set.maxOpSockets, set.maxQueuedRequests, set.maxQueuedRequestsPerCaller]).toEqual([2048, 32, 100, 25]);
    expect(resolved(['--config', configFile({ limits: { maxQueuedRequests: 3 } })]).limits.maxQueuedRequestsPerCaller).toBe(1);
    expect(resolved(['--config', configFile({ limits: { maxQueuedRequestsPerCaller: 4096 } })]).limits).toMatchObject({ maxQueuedRequests: 4096, maxQueuedRequestsPerCaller: 4096 });
    const cases: [unknown, RegExp][] = [
      [{ maxTransforms: 0 }, /:limits\.maxTransforms must be an integer from 1 to 65536 \(got 0\)$/],
      [{ maxTransforms: '512' }, /:limits\.maxTransforms must be an integer from 1 to 65536 \(got "512"\)$/],
      // More than the daemon's async kernel calls at once (native-ffi/libc.ts) would never run.
      [{ maxOpSockets: 65 }, /:limits\.maxOpSockets must be an integer from 1 to 64 \(got 65\)$/],
      [{ maxOpSockets: 0 }, /:limits\.maxOpSockets must be an integer from 1 to 64 \(got 0\)$/],
      [{ maxQueuedRequests: 1.5 }, /:limits\.maxQueuedRequests must be an integer from 1 to 65536 \(got 1\.5\)$/],
      [{ maxQueuedRequests: 65_537 }, /:limits\.maxQueuedRequests must be an integer from 1 to 65536/],
      [{ maxQueuedRequestsPerCaller: 0 }, /:limits\.maxQueuedRequestsPerCaller must be an integer from 1 to 65536 \(got 0\)$/],
      [{ maxQueuedRequestsPerCaller: 4097 }, /:limits\.maxQueuedRequestsPerCaller: 4097 is more than maxQueuedRequests \(4096\); a caller's part cannot exceed the whole$/],
      [{ maxQueuedRequests: 10, maxQueuedRequestsPerCaller: 11 }, /:limits\.maxQueuedRequestsPerCaller: 11 is more than maxQueuedRequests \(10\)/],
    ];
    for (const [limits, re] of cases) {
      const path = configFile({ limits });
      const err = configError(['--config', path]);
      expect(err.message, JSON.stringify(limits)).toMatch(re);
      expect(err.message.startsWith(path), err.message).toBe(true);
    }
  });

  it('policy: flag > env > config file (relative to it) > <config dir>/policy.json', () => {
    expect(resolved([], USER_ENV, 1000).policy).toBe('/home/u/.config/ringfence/policy.json');
    expect(resolved([], { ...USER_ENV, XDG_CONFIG_HOME: '/xdg/cfg' }, 1000).policy).toBe('/xdg/cfg/ringfence/policy.json');
    const file = configFile({ policy: 'p.json' });
    expect(resolved(['--config', file]).policy).toBe(join(dirname(file), 'p.json'));
    expect(resolved(['--config', file], { RINGFENCE_POLICY: '/env/p.json' }).policy).toBe('/env/p.json');
    expect(resolved(['--config', file, '--policy', '/flag/p.json'], { RINGFENCE_POLICY: '/env/p.json' }).policy).toBe('/flag/p.json');
    expect(configError(['--config', configFile({ policy: 3 })]).message).toMatch(/:policy must be a non-empty string/);
  });

  it('as a user: XDG_RUNTIME_DIR, XDG_STATE_HOME or ~/.local/state, mode 0600', () => {
    const c = resolved([], USER_ENV, 1000);
    expect(c.socket).toBe('/run/user/1000/ringfence.sock');
    expect(c.stateDir).toBe('/home/u/.local/state/ringfence');
    expect(c.socketMode).toBe(0o600);
    expect(resolved([], { ...USER_ENV, XDG_STATE_HOME: '/xdg/state' }, 1000).stateDir).toBe('/xdg/state/ringfence');
    // Relative XDG values are invalid per the spec and ignored.
    expect(resolved([], { ...USER_ENV, XDG_STATE_HOME: 'rel' }, 1000).stateDir).toBe('/home/u/.local/state/ringfence');
  });

  it('a user without XDG_RUNTIME_DIR must set --socket', () => {
    expect(configError([], { HOME: '/home/u' }, 1000).message).toMatch(/XDG_RUNTIME_DIR.*--socket/);
    expect(configError([], { HOME: '/home/u', XDG_RUNTIME_DIR: 'relative' }, 1000).message).toMatch(/--socket/);
    expect(resolved(['--socket', '/tmp/s.sock'], { HOME: '/home/u' }, 1000).socket).toBe('/tmp/s.sock');
  });

  it('a user without HOME or XDG_STATE_HOME must set --state-dir', () => {
    expect(configError([], { XDG_RUNTIME_DIR: '/run/user/1' }, 1).message).toMatch(/--state-dir/);
  });

  it('relative XDG_STATE_HOME, XDG_CONFIG_HOME and HOME are ignored, and the message does not call them unset', () => {
    const env = { XDG_RUNTIME_DIR: '/run/user/1', XDG_STATE_HOME: 'state', XDG_CONFIG_HOME: 'cfg', HOME: 'home' };
    expect(configError([], env, 1).message).toBe(
      'cannot choose a state directory for uid 1: neither XDG_STATE_HOME nor HOME is set to an absolute path; set --state-dir or RINGFENCE_STATE_DIR',
    );
    expect(configError(['--state-dir', '/s'], env, 1).message).toBe(
      'cannot choose a policy file for uid 1: neither XDG_CONFIG_HOME nor HOME is set to an absolute path; set --policy or RINGFENCE_POLICY',
    );
  });
});

describe('resolveConfig precedence', () => {
  const file = configFile({ socket: '/file/s.sock', stateDir: '/file/state', logLevel: 'warn' });
  const env = { RINGFENCE_SOCKET: '/env/s.sock', RINGFENCE_STATE_DIR: '/env/state', RINGFENCE_LOG_LEVEL: 'debug', RINGFENCE_CONFIG: file };

  it('flags beat env beat file beat defaults', () => {
    const flags = ['--socket', '/flag/s.sock', '--state-dir=/flag/state', '--log-level', 'trace'];
    expect(resolved(flags, env)).toMatchObject({ socket: '/flag/s.sock', stateDir: '/flag/state', logLevel: 'trace', configFile: file });
    expect(resolved([], env)).toMatchObject({ socket: '/env/s.sock', stateDir: '/env/state', logLevel: 'debug' });
    expect(resolved([], { RINGFENCE_CONFIG: file })).toMatchObject({ socket: '/file/s.sock', stateDir: '/file/state', logLevel: 'warn' });
    expect(resolved(['--config', file])).toMatchObject({ socket: '/file/s.sock', configFile: file });
  });

  it('--config beats RINGFENCE_CONFIG; empty env values count as unset', () => {
    const other = configFile({ logLevel: 'error' });
    expect(resolved(['--config', other], { RINGFENCE_CONFIG: file }).logLevel).toBe('error');
    expect(resolved([], { RINGFENCE_SOCKET: '', RINGFENCE_CONFIG: file }).socket).toBe('/file/s.sock');
  });

  it('resolves relative paths: flags against the cwd, file values against the file', () => {
    const rel = configFile({ socket: 'sub/s.sock', stateDir: '../state' });
    expect(resolved(['--config', rel])).toMatchObject({ socket: join(tmp, 'sub/s.sock'), stateDir: join(tmp, '../state') });
    expect(resolved(['--socket', 'x.sock']).socket).toBe(join(process.cwd(), 'x.sock'));
  });

  it('file limits and socketMode override defaults individually', () => {
    const c = resolved(['--config', configFile({ socketMode: '0640', limits: { maxBatchItems: 100, minRotationPeriod: '30s' } })]);
    expect(c.socketMode).toBe(0o640);
    expect(c.limits).toEqual({ ...DEFAULT_LIMITS, maxBatchItems: 100, minRotationPeriod: 30_000 });
    expect(resolved(['--config', configFile({ socketMode: '600' })]).socketMode).toBe(0o600);
  });

  it('connection and message limits: durations, "0s" to switch a timer off, and the message-size floor', () => {
    const c = resolved([
      '--config',
      configFile({ limits: { connectionIdleTimeout: '0s', connectionMaxAge: '2h', connectionMaxAgeGrace: '500ms', maxConnections: 8, maxConcurrentStreamsPerConnection: 4, maxSessionBufferedBytes: 65_536 } }),
    ]);
    expect(c.limits).toMatchObject({ connectionIdleTimeout: 0, connectionMaxAge: 7_200_000, connectionMaxAgeGrace: 500, maxConnections: 8, maxConcurrentStreamsPerConnection: 4, maxSessionBufferedBytes: 65_536 });
    // Exactly the floor is enough: max(payload, chunk) + associated data + 64 KiB.
    const floor = resolved(['--config', configFile({ limits: { maxPayloadBytes: 1000, maxStreamChunkBytes: 2000, maxAssociatedDataBytes: 100, maxMessageBytes: 65_536 + 2100 } })]);
    expect(floor.limits.maxMessageBytes).toBe(67_636);
    expect(minMessageBytes(floor.limits)).toBe(67_636);
  });

  it('serverOptions maps the limits onto grpc-js options, leaving out the timers that are off', () => {
    expect(serverOptions(DEFAULT_LIMITS)).toEqual({
      'grpc.max_receive_message_length': 4_259_840,
      'grpc.max_send_message_length': 4_259_840,
      'grpc.max_concurrent_streams': 128,
      'grpc.max_connection_idle_ms': 300_000,
    });
    expect(serverOptions({ ...DEFAULT_LIMITS, connectionIdleTimeout: 0, connectionMaxAge: 60_000, connectionMaxAgeGrace: 5000 })).toEqual({
      'grpc.max_receive_message_length': 4_259_840,
      'grpc.max_send_message_length': 4_259_840,
      'grpc.max_concurrent_streams': 128,
      'grpc.max_connection_age_ms': 60_000,
      'grpc.max_connection_age_grace_ms': 5000,
    });
    // A grace of 0 is "no limit", as the docs and `ringfence status` say; grpc-js would cut calls at once.
    expect(serverOptions({ ...DEFAULT_LIMITS, connectionMaxAge: 60_000, connectionMaxAgeGrace: 0 })).not.toHaveProperty('grpc.max_connection_age_grace_ms');
  });
});

describe('connectionMaxAge at its maximum, through grpc-js', () => {
  it('no connection is sent GOAWAY at once when the jitter is at its top (at 24d a third were: found by review)', async () => {
    const c = resolved(['--config', configFile({ limits: { connectionMaxAge: '22d' } })]);
    const socket = join(tmp, 'max-age.sock');
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.9999); // grpc-js: age + (2 * random - 1) * age / 10
    const server = new grpc.Server(serverOptions(c.limits));
    try {
      await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
      const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
      session.on('error', () => undefined);
      const goaway = await new Promise<boolean>((resolve) => {
        session.once('goaway', () => resolve(true));
        setTimeout(() => resolve(false), 1000);
      });
      session.destroy();
      expect(goaway).toBe(false);
    } finally {
      random.mockRestore();
      server.forceShutdown();
    }
  });
});

describe('resolveConfig --help', () => {
  it('returns the usage without resolving anything else', () => {
    // A user without XDG_RUNTIME_DIR would otherwise fail.
    const r = resolveConfig(['--help'], {}, 1000);
    expect(r.help).toBe(true);
    if (r.help) expect(r.usage).toMatch(/^Usage: ringfenced .*--socket PATH/);
    if (r.help) expect(r.usage).toMatch(/maxCalls \(1024\),\s+maxCallsPerCaller \(a quarter of maxCalls\)/);
    if (r.help) expect(r.usage).toMatch(/maxKeys \(1000\),\s+maxKeysPerCaller \(a quarter of maxKeys\), maxVersionsPerKey \(1000\),\s+maxKeyVersions \(8000\), maxKeyVersionsPerCaller \(a quarter of maxKeyVersions\)/);
    expect(resolveConfig(['-h', '--config', '/nonexistent'], {}, 0).help).toBe(true);
  });
});

describe('resolveConfig errors say what and where', () => {
  it('flags', () => {
    expect(configError(['--bogus']).message).toMatch(/--bogus[\s\S]*Usage:/);
    expect(configError(['positional']).message).toMatch(/positional/);
    expect(configError(['--socket']).message).toMatch(/--socket/);
    expect(configError(['--socket', '']).message).toBe('--socket must not be empty');
    expect(configError(['--log-level', 'verbose']).message).toMatch(/^--log-level: log level "verbose" is not one of fatal, error/);
  });

  it('environment', () => {
    expect(configError([], { RINGFENCE_LOG_LEVEL: 'loud' }).message).toMatch(/^RINGFENCE_LOG_LEVEL: log level "loud"/);
    expect(configError([], { RINGFENCE_CONFIG: join(tmp, 'missing.json') }).message).toMatch(/missing\.json \(from RINGFENCE_CONFIG\) cannot be read: ENOENT/);
  });

  it('a socket path longer than sun_path', () => {
    expect(configError(['--socket', `/${'x'.repeat(107)}`]).message).toMatch(/^--socket: .*longer than 107 bytes/);
    expect(resolved(['--socket', `/${'x'.repeat(106)}`]).socket).toHaveLength(107);
    // In the file, even when a flag overrides it (as the file's other values are checked).
    const f = configFile({ socket: `/${'y'.repeat(107)}` });
    expect(configError(['--config', f, '--socket', '/s']).message).toMatch(new RegExp(`^${f}:socket: socket path /y+ is longer than 107 bytes`));
  });

  it('config file: a NUL in a path is refused there, not at the first fs call (which exited 1 naming no key)', () => {
    for (const key of ['socket', 'stateDir', 'policy']) {
      const f = configFile(`{"${key}": "/run/a\\u0000b"}`);
      expect(configError(['--config', f, '--socket', '/s', '--state-dir', '/d', '--policy', '/p']).message, key).toBe(`${f}:${key}: a path must not contain a NUL character`);
    }
  });

  it('config file: held to the policy file\'s rules on who may write it (it names the policy and the state; the tests run as root)', () => {
    const dir = join(tmp, 'owned');
    mkdirSync(dir, { mode: 0o755 });
    const f = join(dir, 'config.json');
    writeFileSync(f, JSON.stringify({ logLevel: 'warn' }), { mode: 0o644 });
    expect(resolved(['--config', f]).logLevel).toBe('warn');
    chmodSync(f, 0o664);
    expect(configError(['--config', f]).message).toBe(`config file ${f} (from --config) is refused: it is writable by its group (chmod g-w it)`);
    chmodSync(f, 0o646);
    expect(configError([], { RINGFENCE_CONFIG: f }).message).toBe(`config file ${f} (from RINGFENCE_CONFIG) is refused: it is writable by every user (chmod o-w it)`);
    chmodSync(f, 0o644);
    chownSync(f, 12345, 0);
    expect(configError(['--config', f]).message).toBe(`config file ${f} (from --config) is refused: it belongs to uid 12345, not to root or the daemon's uid ${process.getuid!()} (chown it)`);
    chownSync(f, process.getuid!(), 0);
    chmodSync(dir, 0o777);
    expect(configError(['--config', f]).message).toMatch(new RegExp(`^config file ${f} \\(from --config\\) is refused: the directory ${dir} on its path is writable by every user, who could replace or delete the config file`));
    chmodSync(dir, 0o755);
    expect(resolved(['--config', f]).logLevel).toBe('warn');
  });

  it('config file: only a regular file, of at most 1 MiB (found by review: a FIFO hung the start)', () => {
    const fifo = join(tmp, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(configError(['--config', fifo]).message).toBe(`config file ${fifo} (from --config) is not a regular file`);
    expect(configError(['--config', '/dev/zero']).message).toBe('config file /dev/zero (from --config) is not a regular file');
    expect(configError(['--config', tmp]).message).toBe(`config file ${tmp} (from --config) is not a regular file`);
    const big = configFile(`{"socket": "/run/x.sock"${' '.repeat(1024 * 1024)}}`);
    expect(configError(['--config', big]).message).toMatch(/ is 10486\d\d bytes; a config file is at most 1048576$/);
  });

  it('config file: syntax, shape and unknown keys', () => {
    const bad = configFile('{"socket": ');
    expect(configError(['--config', bad]).message).toMatch(/is not valid JSON/);
    expect(configError(['--config', configFile([1])]).message).toMatch(/must contain a JSON object/);
    const unknown = configFile({ sockett: '/x' });
    expect(configError(['--config', unknown]).message).toBe(`${unknown}:sockett: unknown key (known: socket, stateDir, logLevel, socketMode, limits, policy)`);
    const unknownLimit = configFile({ limits: { maxPayload: 1 } });
    expect(configError(['--config', unknownLimit]).message).toMatch(new RegExp(`^${unknownLimit}:limits\\.maxPayload: unknown key`));
    // Names every object has (found by review: they passed the check, then crashed with a TypeError).
    for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      const f = configFile(`{"limits": {"${name}": 5}}`);
      expect(configError(['--config', f]).message, name).toMatch(new RegExp(`^${f}:limits\\.${name}: unknown key`));
    }
    // JSON.parse keeps the last of a repeated name, which a reader does not see (review by helper-113).
    const twice = configFile('{"socketMode": "0600", "limits": {"maxPayloadBytes": 1024, "maxPayloadBytes": 4194304}}');
    expect(configError(['--config', twice]).message).toBe(`${twice}:limits.maxPayloadBytes: given twice (again at line 1, column 60); remove one`);
  });

  it('config file: values, even when a flag overrides them', () => {
    const cases: [unknown, RegExp][] = [
      [{ socket: 5 }, /:socket must be a non-empty string/],
      [{ stateDir: '' }, /:stateDir must be a non-empty string/],
      [{ logLevel: 'chatty' }, /:logLevel: log level "chatty"/],
      [{ socketMode: 432 }, /:socketMode must be a non-empty string/],
      [{ socketMode: '0999' }, /:socketMode: "0999" is not an octal permission string/],
      [{ socketMode: '04660' }, /:socketMode: "04660" is not an octal/],
      [{ socketMode: '0060' }, /:socketMode: mode 0060 must give the owner read and write/],
      [{ limits: [] }, /:limits must be a JSON object/],
      [{ limits: { maxPayloadBytes: 16 * 1024 * 1024 + 1 } }, /:limits\.maxPayloadBytes must be an integer from 1 to 16777216 \(got 16777217\)/],
      [{ limits: { maxBatchItems: 0 } }, /:limits\.maxBatchItems must be an integer from 64/],
      // Fewer than the SDK packs into one Session message would end every busy Session.
      [{ limits: { maxBatchItems: PACK_OPS - 1 } }, new RegExp(`:limits\\.maxBatchItems must be an integer from ${PACK_OPS}`)],
      [{ limits: { maxSessionInFlight: 1.5 } }, /:limits\.maxSessionInFlight must be an integer/],
      [{ limits: { maxAssociatedDataBytes: '64' } }, /:limits\.maxAssociatedDataBytes must be an integer/],
      [{ limits: { minRotationPeriod: 3600000 } }, /:limits\.minRotationPeriod must be a duration string/],
      [{ limits: { minRotationPeriod: '0s' } }, /:limits\.minRotationPeriod: 0s is less than the minimum/],
      [{ limits: { minDeletionWaitingPeriod: '1 day' } }, /:limits\.minDeletionWaitingPeriod: invalid duration "1 day"/],
      [{ limits: { minDeletionWaitingPeriod: '366d' } }, /:limits\.minDeletionWaitingPeriod: 366d is more than the maximum of 365d/],
      [{ limits: { maxMessageBytes: 65_535 } }, /:limits\.maxMessageBytes must be an integer from 65536 to 67108864/],
      [{ limits: { maxConcurrentStreamsPerConnection: 0 } }, /:limits\.maxConcurrentStreamsPerConnection must be an integer from 1 to 65536/],
      [{ limits: { maxConnections: 100_001 } }, /:limits\.maxConnections must be an integer from 1 to 100000/],
      [{ limits: { maxSessionBufferedBytes: 1024 } }, /:limits\.maxSessionBufferedBytes must be an integer from 65536/],
      [{ limits: { connectionIdleTimeout: 1000 } }, /:limits\.connectionIdleTimeout must be a duration string/],
      // Node timers hold at most 2^31-1 ms (about 24.8 days); longer would fire at once.
      [{ limits: { connectionMaxAge: '23d' } }, /:limits\.connectionMaxAge: 23d is more than the maximum of 22d/],
      [{ limits: { connectionMaxAgeGrace: 'soon' } }, /:limits\.connectionMaxAgeGrace: invalid duration "soon"/],
      // A message must carry the largest payload plus associated data plus the envelope.
      [{ limits: { maxPayloadBytes: 4 * 1024 * 1024 } }, /:limits\.maxMessageBytes: 4259840 is too small for the payload limits: .* at least 4325376$/],
      [{ limits: { maxStreamChunkBytes: 2 * 1024 * 1024, maxAssociatedDataBytes: 65_536, maxMessageBytes: 2 * 1024 * 1024 + 131_071 } }, /:limits\.maxMessageBytes: 2228223 is too small .* at least 2228224$/],
    ];
    for (const [doc, re] of cases) {
      const path = configFile(doc);
      const msg = configError(['--config', path, '--socket', '/s', '--state-dir', '/d', '--log-level', 'info']).message;
      expect(msg, JSON.stringify(doc)).toMatch(re);
      expect(msg.startsWith(path), msg).toBe(true);
    }
  });
});

describe('defaultSocketPath (shared with the SDK)', () => {
  it('honours RINGFENCE_SOCKET, then root, then XDG_RUNTIME_DIR', () => {
    expect(defaultSocketPath({ RINGFENCE_SOCKET: '/custom.sock' }, 1000)).toBe('/custom.sock');
    expect(defaultSocketPath({ RINGFENCE_SOCKET: '' }, 0)).toBe('/run/ringfence/ringfence.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/5' }, 5)).toBe('/run/user/5/ringfence.sock');
    expect(() => defaultSocketPath({}, 5)).toThrow(/XDG_RUNTIME_DIR.*RINGFENCE_SOCKET/);
  });
});
