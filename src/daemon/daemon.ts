/**
 * Assembles and runs the daemon: capability probe, state directory, master key, kernel key store,
 * engine, keys, gRPC services (ringfence + grpc.health.v1 + reflection) on the Unix socket, the
 * scheduler for rotations and deletions, and an orderly stop.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { cannotWork, inconclusiveProbe, probeCapabilities, type AlgStatus, type CapabilityReport } from '../capabilities/probe.js';
import { CryptoService } from '../gen/ringfence/v1/crypto_service_pb.js';
import { KeyService } from '../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../gen/ringfence/v1/status_service_pb.js';
import { daemonServiceDefinition } from './api/decode.js';
import { DaemonHealth } from './api/daemon-health.js';
import { addReflection } from './api/reflection.js';
import { minMessageBytes, type DaemonConfig, type Limits } from './config.js';
import { openFilesLimit, openFilesWarning } from './open-files.js';
import { estimatedRequestBound, OPTMEM_MAX_BEFORE_6_8, readOptmemMax } from './engine/request-bound.js';
import { CryptoEngine } from './engine/engine.js';
import { engineOptionsFrom } from './engine/engine-options.js';
import { KernelKeystore } from './keystore/kernel-keystore.js';
import { KeyManager } from './keys/key-manager.js';
import { keyEventLog } from './daemon-logger.js';
import { KeyMaterial, WRAP_SUITES } from './keys/material.js';
import { MaterialFingerprints } from './keys/fingerprints.js';
import { loadedState } from './keys/model.js';
import { StateStore } from './state/state-store.js';
import { loadOrCreateMasterKey, masterKeyMismatchMessage } from './state/master-key.js';
import { KeystoreError } from './keystore/errors.js';
import { CallerConnectionLimitError, Connections } from './identity/connections.js';
import { throttledRefusals, type RefusalCounter } from './identity/warn-throttle.js';
import { readBootId, WallClockGain } from './keys/wall-clock-gain.js';
import { pendingPostponementMs, startDueWorkScheduler } from './keys/due-work-scheduler.js';
import { DROP_WARN_INTERVAL_MS, openListener } from './identity/listener.js';
import { listenFdFromEnv } from './identity/listen-fds.js';
import { assertSocketPathFree, lockSocketPath } from './socket.js';
import { Access, DENY_ALL } from './policy/access.js';
import { PolicyStore } from './policy/policy-store.js';
import { pinoAudit } from './api/audit.js';
import { refusalBudget } from './api/audit-refusals.js';
import { cryptoServiceHandlers } from './api/crypto-service.js';
import { keyServiceHandlers } from './api/key-service.js';
import { statusServiceHandlers } from './api/status-service.js';
import type { OpContext } from './ops/context.js';
import { MemoryBudget } from './api/memory-budget.js';
import { CallerSlots } from './api/caller-slots.js';
import { Drain, DRAIN_MS, drainServer } from './api/drain.js';
import { callerKey } from './api/handler.js';
import { refusedUnaryAudit } from './api/refused-call-audit.js';
import { callLimit, type CallLimitDeps } from './api/call-limit.js';
import { VERSION } from './version.js';
import { notifyReliably, startWatchdog } from './watchdog.js';

/** The scheduler looks at least this often, so keys created or changed meanwhile are seen in time. */
const SCHEDULER_MAX_SLEEP_MS = 1000;

const SERVICES = [KeyService, CryptoService, StatusService];

export interface Daemon {
  readonly socket: string;
  readonly report: CapabilityReport;
  /** Reloads the policy file (SIGHUP); an invalid file keeps the policy in force. */
  reloadPolicy(): void;
  stop(): Promise<void>;
}

function suiteStatusFrom(report: CapabilityReport): (name: string) => AlgStatus {
  const byName = new Map(report.suites.map((s) => [s.name, s.status]));
  return (name) => byName.get(name) ?? 'missing';
}

/** `takePendingReload`: whether a SIGHUP came during start-up (and it is now taken care of). */
export interface DaemonHooks {
  takePendingReload?: () => boolean;
  /** The errno while the log and audit trail cannot be written (log-sink.ts): operations are refused meanwhile. */
  auditFailing?: () => string | undefined;
}

export async function startDaemon(config: DaemonConfig, log: Logger, hooks: DaemonHooks = {}): Promise<Daemon> {
  const startTime = Date.now();
  const openFiles = openFilesWarning(config.limits, openFilesLimit());
  if (openFiles) log.warn(openFiles.fields, openFiles.message);
  const report = probeCapabilities();
  // Inconclusive first: a bind short of memory everywhere also leaves no suite, which must not read
  // as a kernel that cannot work (review by helper-119).
  const inconclusive = inconclusiveProbe(report);
  const unusable = inconclusive ? undefined : cannotWork(report);
  // At warn when the daemon cannot start, so the reasons show whatever the log level.
  for (const line of report.summary) log[unusable || inconclusive ? 'warn' : 'info']({ kernel: report.kernel.release }, line);
  if (unusable) throw new Error(`${unusable}; ringfenced cannot serve cryptography here — see \`ringfence doctor\``);
  if (inconclusive) throw new Error(`${inconclusive}; start it again shortly (\`ringfence doctor\` probes the same way)`);

  // A socket another daemon serves (or is starting to serve) is found before anything is created
  // (a state directory, a master key); the lock is held until the process ends.
  const socketLock = listenFdFromEnv(process.env) === undefined ? await lockSocketPath(config.socket, { log: (msg, fields) => log.info(fields ?? {}, msg) }) : undefined;
  if (socketLock) {
    try {
      await assertSocketPathFree(config.socket);
    } catch (err) {
      await socketLock.release();
      throw err;
    }
  }
  const plain = (msg: string, fields?: object) => log.info(fields ?? {}, msg);
  // Root and the daemon's own uid administer everything; the policy grants the rest.
  const admins = new Set([0, process.getuid!()]);
  const policy = new PolicyStore({ path: config.policy, admins, log: (level, msg, fields) => log[level](fields ?? {}, msg) });
  let store: StateStore;
  try {
    policy.load();
    store = await StateStore.open(config.stateDir, { log: plain });
  } catch (err) {
    await socketLock?.release();
    throw err;
  }
  // Run in reverse: the socket's lock is released last, after the listener has closed (and unlinked) it.
  const cleanups: (() => void | Promise<void>)[] = [() => socketLock?.release(), () => store.close(), () => policy.close()];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    // Read first: keys saved under a master key forbid making a new one in its place.
    const state = loadedState(store.load(), store.statePath);
    const requiredBy = state.keys.length > 0 ? `${store.statePath} holds ${state.keys.length} keys` : state.masterCheck ? `${store.statePath} holds a master-key check` : undefined;
    const master = await loadOrCreateMasterKey({ stateDir: store.dir, requiredBy, log: plain });
    const keystore = KernelKeystore.withMasterKey(master.material); // wipes it
    cleanups.push(() => keystore.close());
    const engine = new CryptoEngine(engineOptionsFrom(config.limits));
    cleanups.push(() => engine.close());
    warnIfKernelTakesLess(config.limits, log);
    const suiteStatus = suiteStatusFrom(report);
    const material = new KeyMaterial(keystore, engine, WRAP_SUITES.find((s) => suiteStatus(s.name) === 'available'));
    // Every wall-clock reading of the key manager goes through this, so the scheduler sees every
    // backward step before a deletion is scheduled (wall-clock-gain.ts).
    // Resumed from the last state write of this boot, so a step seen before a restart still counts.
    const bootId = readBootId();
    const clock = WallClockGain.resumed(state.clock, bootId);
    const keys = new KeyManager({
      material,
      fingerprints: new MaterialFingerprints(keystore, engine),
      now: () => clock.now(),
      pendingClockPostponementMs: (wall) => pendingPostponementMs(clock, undefined, wall),
      persist: (next, meta) => store.save(bootId === undefined ? next : { ...next, clock: clock.anchor(bootId, undefined, meta?.postponingMs) }),
      suiteStatus,
      limits: {
        minRotationPeriodMs: config.limits.minRotationPeriod,
        minDeletionWaitingPeriodMs: config.limits.minDeletionWaitingPeriod,
        encryptionLimit: config.limits.encryptionsPerVersion,
        maxKeys: config.limits.maxKeys,
        maxKeysPerCaller: config.limits.maxKeysPerCaller,
        maxVersionsPerKey: config.limits.maxVersionsPerKey,
        maxKeyVersions: config.limits.maxKeyVersions,
        maxKeyVersionsPerCaller: config.limits.maxKeyVersionsPerCaller,
      },
      // The policy's administrators: they provision keys for others, so only the daemon-wide caps hold them.
      uncappedCallers: admins,
      log: keyEventLog(log),
    });
    await keys.open(state).catch((err: unknown) => {
      if (err instanceof KeystoreError && err.code === 'MASTER_KEY_MISMATCH') throw new Error(masterKeyMismatchMessage(master.path, store.statePath, err.message), { cause: err });
      throw err;
    });
    cleanups.push(() => keys.close());

    const opLimits = { ...config.limits };
    const drain = new Drain();
    // Handlers replace `authorize` per call with the caller's (api/handler.ts callContext).
    const ctx: OpContext = {
      keys,
      engine,
      limits: opLimits,
      suiteStatus,
      authorize: DENY_ALL,
      budget: new MemoryBudget(config.limits.maxBufferedBytes, config.limits.maxBufferedBytesPerCaller),
      hashStreamSlots: new CallerSlots(config.limits.maxHashStreamsPerCaller, 'HashStream calls', 'hash_streams_per_caller', 'maxHashStreamsPerCaller'),
      drain,
    };
    const connections = new Connections(undefined, config.limits.maxConnectionsPerCaller);
    const auditTrail = refusalBudget(pinoAudit(log));
    const deps = { audit: auditTrail.audit, log, drain, access: new Access(policy, (call) => connections.principalOf(call), hooks.auditFailing) };
    // Every call of every service, counted from its first header until its stream closes (api/call-limit.ts).
    const calls = new CallerSlots(config.limits.maxCallsPerCaller, 'calls', 'calls_per_caller', 'maxCallsPerCaller', { limit: config.limits.maxCalls, limitName: 'calls', setting: 'maxCalls' });
    const server = new grpc.Server({ ...serverOptions(config.limits), interceptors: serverInterceptors({ ...deps, calls }) });
    server.addService(daemonServiceDefinition(KeyService, config.limits.maxBatchItems), keyServiceHandlers(keys, deps, config.limits.maxMessageBytes));
    server.addService(daemonServiceDefinition(CryptoService, config.limits.maxBatchItems), cryptoServiceHandlers(ctx, deps));
    server.addService(
      daemonServiceDefinition(StatusService, config.limits.maxBatchItems),
      statusServiceHandlers(keys, {
        version: VERSION,
        startTime,
        report,
        limits: config.limits,
        ...(hooks.auditFailing ? { auditFailing: hooks.auditFailing } : {}),
        usage: (principal) => {
          const caller = callerKey({ principal });
          return {
            connections: connections.size,
            bufferedBytes: BigInt(ctx.budget.held),
            hashStreams: ctx.hashStreamSlots.total,
            callerConnections: principal ? connections.openBy(principal.uid) : 0,
            callerBufferedBytes: BigInt(ctx.budget.heldBy(caller)),
            callerHashStreams: ctx.hashStreamSlots.heldBy(caller),
            calls: calls.total,
            callerCalls: calls.heldBy(caller),
          };
        },
      }, deps),
    );
    const health = new DaemonHealth(server, ['', ...SERVICES.map((s) => s.typeName)], drain);
    addReflection(server, SERVICES, drain);

    // Connections are accepted here, identified (SO_PEERCRED), and only then handed to grpc-js.
    // One throttled warning per uid, so that each names the caller whose connections were closed.
    const callerRefusals = new Map<number, RefusalCounter>();
    const refuseCaller = (uid: number, limit: number) => {
      let counter = callerRefusals.get(uid);
      if (!counter) callerRefusals.set(uid, (counter = throttledRefusals(DROP_WARN_INTERVAL_MS, (fields) => log.warn(fields, 'a caller holds maxConnectionsPerCaller connections: closed its new ones at accept'))));
      counter.count({ uid, maxConnectionsPerCaller: limit });
    };
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    cleanups.push(() => server.forceShutdown());
    // The policy as it is now, not as it was before the keys loaded, before the first caller connects.
    policy.watch();
    if (hooks.takePendingReload?.()) policy.reload('SIGHUP');
    // Rotations and deletions that come due, also those due while the daemon was down: the first
    // pass ends before the first caller connects, so no call sees a key whose deletion is overdue
    // (found by review: a CancelKeyDeletion could race it). A failure is logged and retried; it does
    // not keep the daemon from serving (due-work-scheduler.ts).
    const scheduler = startDueWorkScheduler(keys.dueWork(), {
      maxSleepMs: SCHEDULER_MAX_SLEEP_MS,
      clock,
      onClockStep: (stepMs) => log.warn({ stepMs: Math.round(stepMs) }, 'the wall clock stepped forward; postponing scheduled key deletions by the step'),
      onError: (err, retryInMs) => log.error({ err, retryInMs }, 'scheduled rotation or deletion failed; will retry'),
    });
    cleanups.push(() => scheduler.stop());
    await scheduler.started;
    const listener = await openListener({
      socket: config.socket,
      socketMode: config.socketMode,
      env: process.env,
      log: plain,
      warn: (msg, fields) => log.warn(fields ?? {}, msg),
      maxConnections: config.limits.maxConnections,
      onConnection: (sock) => {
        sock.on('error', () => undefined); // a client's reset must not become an uncaught error
        try {
          connections.register(sock);
        } catch (err) {
          if (err instanceof CallerConnectionLimitError) refuseCaller(err.uid, err.limit);
          else log.warn({ err: (err as Error).message }, 'cannot read the peer credentials of a connection; closing it');
          sock.destroy();
          return;
        }
        injector.injectConnection(sock);
      },
    });
    cleanups.push(() => listener.close());

    health.serving();
    // Which master key it runs on: moving a state-dir key into a credential is checked by this (helper-114).
    log.info({ socket: listener.activated ? 'systemd (LISTEN_FDS)' : config.socket, policy: config.policy, stateDir: store.dir, masterKey: master.path, masterKeySource: master.source, keys: keys.size, pid: process.pid, defaultAeadSuite: report.defaultAeadSuite }, 'ringfenced ready');
    const cancelReady = notify(log, `READY=1\nSTATUS=serving ${keys.size} keys on ${config.socket}\nMAINPID=${process.pid}`);
    // systemd: WATCHDOG=1 every WATCHDOG_USEC/2 and STATUS= updates (watchdog.ts); it stops after the drain.
    let draining = false;
    const serviceStatus = () => {
      if (draining) return 'draining calls';
      const auditFailure = hooks.auditFailing?.();
      return auditFailure ? `refusing every operation: cannot write the audit trail (${auditFailure})` : `serving ${keys.size} keys on ${config.socket}`;
    };
    const watchdog = startWatchdog({ status: serviceStatus, warn: (m, f) => log.warn(f ?? {}, m) });
    cleanups.push(() => watchdog.stop());

    return {
      socket: config.socket,
      report,
      reloadPolicy: () => void policy.reload('SIGHUP'),
      async stop() {
        scheduler.stop();
        listener.close(); // no new connections; those open drain below
        // A READY=1 still being retried must not follow STOPPING=1, nor a status say "serving" now.
        cancelReady();
        draining = true;
        notify(log, 'STOPPING=1\nSTATUS=draining calls');
        // Health turns NOT_SERVING and its watches end (api/daemon-health.ts); Sessions end once
        // what they read is answered; calls still open after the drain period are answered
        // UNAVAILABLE / SHUTTING_DOWN before their connections are closed (api/drain.ts).
        await drainServer(server, drain, {
          drainMs: DRAIN_MS,
          onCutOff: () => log.warn({ drainMs: DRAIN_MS }, 'calls still running after the drain period; answering them UNAVAILABLE (SHUTTING_DOWN) and closing their connections'),
        });
        auditTrail.flush();
        await cleanup();
        log.info('ringfenced stopped');
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * The server's interceptors, innermost first. The call limit innermost: a call it refuses never
 * reaches the other's listener, and it reads the call's grpc-encoding off grpc-js's own call.
 */
export function serverInterceptors(deps: CallLimitDeps & Parameters<typeof refusedUnaryAudit>[0]): grpc.ServerInterceptor[] {
  return [callLimit(deps), refusedUnaryAudit(deps)];
}

/**
 * grpc-js server options from the limits. Oversized messages fail the call with RESOURCE_EXHAUSTED;
 * streams beyond max_concurrent_streams wait in the client (HTTP/2 SETTINGS) rather than fail;
 * idle and aged connections get a GOAWAY (clients reconnect for their next call).
 */
export function serverOptions(limits: Limits): grpc.ServerOptions {
  const options: grpc.ServerOptions = {
    'grpc.max_receive_message_length': limits.maxMessageBytes,
    'grpc.max_send_message_length': limits.maxMessageBytes,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreamsPerConnection,
  };
  // Absent options mean "no limit" to grpc-js; 0 means that in the config.
  if (limits.connectionIdleTimeout > 0) options['grpc.max_connection_idle_ms'] = limits.connectionIdleTimeout;
  if (limits.connectionMaxAge > 0) {
    options['grpc.max_connection_age_ms'] = limits.connectionMaxAge;
    // 0 is "no limit" here as for the other timers; grpc-js would read 0 as "cut calls off at once".
    if (limits.connectionMaxAgeGrace > 0) options['grpc.max_connection_age_grace_ms'] = limits.connectionMaxAgeGrace;
  }
  return options;
}

function notify(log: Logger, state: string): () => void {
  return notifyReliably(state, { warn: (msg, fields) => log.warn(fields ?? {}, msg) });
}

/**
 * Says at start when the payload limits allow requests larger than AF_ALG takes in this network
 * namespace (net.core.optmem_max; request-bound.ts): each such request would fail PAYLOAD_TOO_LARGE.
 */
function warnIfKernelTakesLess(limits: Limits, log: Logger): void {
  const seen = readOptmemMax();
  if (seen === undefined) return;
  // Not shown here (a kernel before 6.8 in its own network namespace): judged by that era's default.
  const optmemMax = seen === 'host-only' ? OPTMEM_MAX_BEFORE_6_8 : seen;
  const largestRequestBytes = minMessageBytes(limits);
  const kernelTakesBytes = estimatedRequestBound(optmemMax);
  if (largestRequestBytes <= kernelTakesBytes) return;
  log.warn(
    { optmemMax: seen, largestRequestBytes, kernelTakesBytes },
    seen === 'host-only'
      ? `the payload limits allow requests larger than AF_ALG takes with net.core.optmem_max at ${OPTMEM_MAX_BEFORE_6_8}, the default before Linux 6.8, and this network namespace cannot show the host's value: unless it was raised, those will fail PAYLOAD_TOO_LARGE (docs/operations.md, Limits)`
      : 'the payload limits allow requests larger than AF_ALG takes with net.core.optmem_max in this network namespace: those will fail PAYLOAD_TOO_LARGE; lower maxPayloadBytes / maxStreamChunkBytes (docs/operations.md, Limits)',
  );
}
