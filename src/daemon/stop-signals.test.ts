import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { firstStopSignal } from './stop-signals.js';

describe('firstStopSignal', () => {
  it.each([
    ['SIGTERM', 'SIGINT'],
    ['SIGINT', 'SIGTERM'],
  ] as const)('%s, then neither signal is handled any more', async (first, _other) => {
    const proc = new EventEmitter();
    const seen: string[] = [];
    const stopped = firstStopSignal(proc as never, (s) => seen.push(s));
    expect([proc.listenerCount('SIGTERM'), proc.listenerCount('SIGINT')]).toEqual([1, 1]);
    proc.emit(first);
    await stopped;
    expect(seen).toEqual([first]);
    expect([proc.listenerCount('SIGTERM'), proc.listenerCount('SIGINT')]).toEqual([0, 0]);
  });

  // Found by review: separate once() handlers left SIGINT handled after a SIGTERM, so SIGTERM then
  // SIGINT drained on instead of ending the daemon at once, as README and --help say.
  it.each([
    ['SIGTERM', 'SIGINT'],
    ['SIGTERM', 'SIGTERM'],
    ['SIGINT', 'SIGTERM'],
  ] as const)('a real process: %s starts the stop, a second %s during the drain ends it by that signal', async (first, second) => {
    const module = fileURLToPath(new URL('./stop-signals.ts', import.meta.url));
    // A stand-in for main(): serving (the interval keeps it alive), then a drain that never ends by itself.
    const script = `import { firstStopSignal } from ${JSON.stringify(module)};
      setInterval(() => {}, 1000);
      firstStopSignal(process, (s) => console.log('stopping ' + s)).then(() => setTimeout(() => process.exit(0), 30000));
      console.log('ready');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (code, signal) => r([code, signal])));
    const seen = async (text: string) => {
      for (let i = 0; i < 400 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 25));
      expect(out).toContain(text);
    };
    await seen('ready');
    child.kill(first);
    await seen(`stopping ${first}`);
    child.kill(second);
    expect(await exited).toEqual([null, second]);
  }, 30_000);
});
