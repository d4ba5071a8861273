/**
 * `ringfenced`: the daemon's entry point. Thin: configuration, logger, signals; daemon.ts does the rest.
 * Exit codes: 0 after a clean stop, 1 when it cannot start (the reason on stderr and in the log), 2 usage.
 */
import * as grpc from '@grpc/grpc-js';
import { ConfigError, resolveConfig } from './config.js';
import { startDaemon } from './daemon.js';
import { daemonLogger } from './daemon-logger.js';
import { grpcLogger } from './grpc-log.js';
import { openLogSink } from './log-sink.js';
import { firstStopSignal } from './stop-signals.js';
import { setDumpable } from '../../native-ffi/dumpable.js';

async function main(argv: string[]): Promise<number> {
  let config;
  try {
    config = resolveConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ringfenced: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (config.help) {
    process.stdout.write(config.usage);
    return 0;
  }
  // stderr is best effort: under systemd it is the same stream as stdout, and a write to a closed
  // pipe would be an uncaught 'error' event, ending the daemon (Node's default for stdio EPIPE).
  process.stderr.on('error', () => undefined);
  let logLost: () => void = () => undefined;
  const logGone = new Promise<void>((resolve) => (logLost = resolve));
  const sink = openLogSink(1, {
    onRecovered: (failedWith, dropped) => log.warn({ failedWith, droppedLines: dropped }, 'the log and audit trail can be written again'),
    onLost: () => logLost(),
  });
  process.on('exit', () => sink.flushOnExit());
  // The level governs diagnostics only: the audit trail is written at any level (daemon-logger.ts).
  const log = daemonLogger(config.logLevel, sink.stream);
  grpc.setLogger(grpcLogger(log));
  // Imported key material passes through buffers the daemon cannot wipe (the gRPC transport's): no
  // core dump, and no ptrace or /proc/<pid>/mem for other processes of the daemon's uid.
  try {
    setDumpable(false);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot make the daemon undumpable (PR_SET_DUMPABLE): a core dump could hold imported key material');
  }
  // Node opens its inspector on SIGUSR1 unless the process listens for it: a debugger on
  // 127.0.0.1:9229 that asks for no credentials, through which any local user could run code in the
  // daemon (review by helper-132).
  process.on('SIGUSR1', () => log.warn({ signal: 'SIGUSR1' }, 'SIGUSR1 ignored: ringfenced opens no debugger'));
  // Handlers catch their own errors; anything that still escapes is logged, never fatal to other callers.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  // Installed before start-up (which may take a while as keys load): SIGHUP's default action would
  // end the process. One that comes early is applied before the socket opens (startDaemon's hook).
  let reloadWhenReady = false;
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, daemon ? 'reloading the policy' : 'SIGHUP during start-up: the policy is reloaded once started');
    if (daemon) daemon.reloadPolicy();
    else reloadWhenReady = true;
  });
  // Also installed before start-up: a SIGTERM that came in the moment between "ready" and a handler
  // installed afterwards took the default action and ended the daemon by signal, without the drain
  // (found in the guests: a caller stopping it as soon as it was ready). One that comes during start-up
  // stops the daemon as soon as it has started. A second one takes the default action: stop now.
  const stopRequested = firstStopSignal(process, (signal) => log.info({ signal }, daemon ? 'stopping' : `${signal} during start-up: stopping once started`));
  try {
    daemon = await startDaemon(config, log, {
      auditFailing: sink.failing,
      // Taken before the socket opens, so callers never meet the policy as it was before the SIGHUP.
      takePendingReload: () => {
        const pending = reloadWhenReady;
        reloadWhenReady = false;
        return pending;
      },
    });
  } catch (err) {
    const message = (err as Error).message;
    log.fatal({ err }, `cannot start: ${message}`);
    process.stderr.write(`ringfenced: cannot start: ${message}\n`);
    return 1;
  }
  if (reloadWhenReady) daemon.reloadPolicy();
  const lost = await Promise.race([stopRequested.then(() => false), logGone.then(() => true)]);
  await daemon.stop();
  // Not 0: systemd's Restart=on-failure starts the daemon again, with a new stdout.
  return lost ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ringfenced: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
