/**
 * SIGUSR1 makes Node open its inspector, an unauthenticated debugger on 127.0.0.1:9229, unless the
 * process listens for it. bin/ringfenced listens from its first statement, before the daemon's
 * modules load (review by helper-136: main() installed its listener only after hundreds of ms of
 * loading). The running daemon is checked in test/e2e/hostile.kernel.test.ts; this host has no
 * AF_ALG, so here the daemon stops after loading, which is the window that matters.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../test/support/run-ts.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts bin/ringfenced, sends `signal` while its modules load, and gives what it printed and how it
 * ended. koffi's native module is mapped while the daemon's modules load: after bin/ringfenced's
 * first statement, before main() runs. Not earlier: Node's own start-up cannot be covered.
 */
async function signalWhileLoading(signal: NodeJS.Signals): Promise<{ out: string; code: number | null; signal: NodeJS.Signals | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'rf-signal-'));
  try {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin/ringfenced'), '--state-dir', join(dir, 'state'), '--socket', join(dir, 's.sock'), '--policy', join(dir, 'policy.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (code, sig) => r([code, sig])));
    const loading = () => {
      try {
        return readFileSync(`/proc/${child.pid}/maps`, 'utf8').includes('koffi');
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 3000 && child.exitCode === null && !loading(); i++) await sleep(5);
    expect(loading(), 'the daemon never got to loading koffi').toBe(true);
    child.kill(signal);
    await Promise.race([exit, sleep(8000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    const [code, sig] = await exit;
    return { out, code, signal: sig };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

it('SIGUSR1 while the daemon is still loading its modules opens no debugger', async () => {
  const { out } = await signalWhileLoading('SIGUSR1');
  // Node's own messages: "Debugger listening on ws://...", or "Starting inspector on ... failed".
  expect(out).not.toMatch(/Debugger listening|Starting inspector/);
}, 60_000);

// Review by helper-184: SIGHUP's default action ends the process, and main() installs its listener
// only after the modules load; a SIGHUP then (`systemctl reload`, a `kill -HUP` of every ringfenced)
// ended the daemon by a signal systemd counts as a clean exit, so Restart=on-failure did not restart it.
it('SIGHUP while the daemon is still loading its modules does not end it', async () => {
  // This host has no AF_ALG: the daemon exits 1 at start, not by the SIGHUP.
  expect((await signalWhileLoading('SIGHUP')).signal).not.toBe('SIGHUP');
}, 60_000);
