// The log and audit trail's destination failing: a full disk (/dev/full answers every write with
// ENOSPC), a pipe nobody reads (EAGAIN), a pipe whose reader is gone (EPIPE).
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PROJECT_ROOT, projectModule } from '../../test/support/run-ts.js';
import { sleep, until } from '../../test/support/wait.js';
import { openLogSink } from './log-sink.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/**
 * A FIFO standing for the daemon's stdout: a non-blocking reader, and a writer that blocks as a
 * shell's pipe or the journal's socket does, or not. `read()` takes what is there, and returns all
 * read so far.
 */
function fifo(blockingWriter: boolean): { writer: number; read: () => string } {
  const dir = mkdtempSync(join(tmpdir(), 'rf-sink-'));
  const path = join(dir, 'log');
  execFileSync('mkfifo', [path]);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, blockingWriter ? constants.O_WRONLY : constants.O_WRONLY | constants.O_NONBLOCK);
  let text = '';
  const buf = Buffer.alloc(1 << 16);
  const read = () => {
    for (;;) {
      try {
        const n = readSync(reader, buf);
        if (n <= 0) return text;
        text += buf.toString('utf8', 0, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return text;
        throw err;
      }
    }
  };
  // Read out before closing: a write waiting in libuv's pool ends then.
  cleanups.push(() => (read(), closeSync(writer), closeSync(reader), rmSync(dir, { recursive: true, force: true })));
  return { writer, read };
}

describe('openLogSink', () => {
  it('a full disk: the sink says it is failing (once, on stderr), the logger goes on without an error thrown, and the exit flush returns', async () => {
    const fd = openSync('/dev/full', 'w');
    cleanups.push(() => closeSync(fd));
    const told: string[] = [];
    const sink = openLogSink(fd, { tell: (l) => told.push(l) });
    const log = pino(sink.stream);
    for (let i = 0; i < 100; i++) log.info({ i }, 'line');
    await until('the sink fails', () => sink.failing() !== undefined);
    for (let i = 0; i < 100; i++) log.info({ i }, 'more');
    await sleep(200);
    expect(sink.failing()).toBe('ENOSPC');
    expect(told).toEqual([`ringfenced: cannot write the log and audit trail to fd ${fd} (ENOSPC); refusing operations until it can be written again`]);
    // sonic-boom 4 retried this forever: the daemon never exited.
    sink.flushOnExit();
  });

  it('a pipe nobody reads fails after 5 s of EAGAIN; once read, it recovers, and what it kept comes out whole and in order', async () => {
    const { writer, read } = fifo(false);
    const told: string[] = [];
    const recovered: [string, number][] = [];
    // A buffer the lines fit in: one that overflows fails the sink at once (the next test).
    const sink = openLogSink(writer, { tell: (l) => told.push(l), onRecovered: (errno, n) => recovered.push([errno, n]), maxBufferedBytes: 1024 * 1024, retryMs: 50 });
    const log = pino({ base: null, timestamp: false }, sink.stream);
    const pad = 'x'.repeat(200);
    let sent = 0;
    // Past the pipe's 64 KiB.
    for (; sent < 3000; sent++) log.info({ seq: sent, pad });
    await until('the sink fails', () => sink.failing() !== undefined);
    expect(sink.failing()).toBe('EAGAIN');
    expect(sink.dropped()).toBe(0);

    await until('the sink recovers', () => (read(), sink.failing() === undefined));
    log.info({ seq: sent++, pad });
    await until('every kept line is read', () => read().endsWith(`"seq":${sent - 1},"pad":"${pad}"}\n`));

    const seqs = read().trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    // Every line was either written or counted as dropped.
    expect(seqs.length + sink.dropped()).toBe(sent);
    expect(recovered).toEqual([['EAGAIN', sink.dropped()]]);
    expect(told).toHaveLength(2);
    expect(told[1]).toBe(`ringfenced: the log and audit trail can be written again (after EAGAIN; ${sink.dropped()} lines dropped meanwhile)`);
  }, 60_000);

  it('a destination that takes lines slower than they come, without a failed write (a blocking pipe whose reader stalls): the sink fails at its first dropped line, not only counts it, and recovers once read', async () => {
    // Blocking, as a shell's pipe or the journal's socket: a write waits for the reader, no EAGAIN.
    const { writer, read } = fifo(true);
    const told: string[] = [];
    const recovered: [string, number][] = [];
    const sink = openLogSink(writer, { tell: (l) => told.push(l), onRecovered: (errno, n) => recovered.push([errno, n]), maxBufferedBytes: 256 * 1024, retryMs: 50 });
    const log = pino({ base: null, timestamp: false }, sink.stream);
    const pad = 'x'.repeat(200);
    let sent = 0;
    for (; sent < 3000; sent++) log.info({ seq: sent, pad });
    // No write fails: it waits. Operations whose audit lines would be dropped are refused from here
    // on (found by review: they were served while their lines were dropped, for as long as it waits).
    const droppedAtOnce = sink.dropped();
    const failingAtOnce = sink.failing();
    await sleep(200);
    const failingLater = sink.failing();

    await until('the sink recovers', () => (read(), sink.failing() === undefined));
    log.info({ seq: sent++, pad });
    await until('every kept line is read', () => read().endsWith(`"seq":${sent - 1},"pad":"${pad}"}\n`));
    expect(droppedAtOnce).toBeGreaterThan(0);
    expect(failingAtOnce).toBe('ENOBUFS');
    expect(failingLater).toBe('ENOBUFS');
    const seqs = read().trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(seqs.length + sink.dropped()).toBe(sent);
    expect(recovered).toEqual([['ENOBUFS', sink.dropped()]]);
    expect(told[0]).toContain('(ENOBUFS)');
  }, 60_000);

  // Under systemd stderr is the journal's stream as stdout is, and `ringfenced > FILE 2>&1` puts both
  // on one file system: the notice then fails as the log does, and process.stderr re-threw that as
  // an uncaught 'error' event, which ended the daemon the change was to keep alive.
  for (const [name, dest] of [['a full disk', 'full'], ['a pipe whose reader is gone', 'closed pipe']] as const) {
    it(`its notice on stderr, when stderr fails as stdout does (${name}), does not end the process`, async () => {
      const full = dest === 'full' ? openSync('/dev/full', 'w') : undefined;
      if (full !== undefined) cleanups.push(() => closeSync(full));
      const code = `import { writeSync } from 'node:fs';
        import { pino } from 'pino';
        import { openLogSink } from ${projectModule('src/daemon/log-sink.ts')};
        const sink = openLogSink(1);
        const log = pino(sink.stream);
        log.info('a line');
        while (sink.failing() === undefined) await new Promise((r) => setTimeout(r, 10));
        log.info('another');
        await new Promise((r) => setTimeout(r, 500));
        writeSync(3, JSON.stringify({ failing: sink.failing() }));`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
        cwd: PROJECT_ROOT,
        env: { ...process.env, TSX_TSCONFIG_PATH: `${PROJECT_ROOT}tsconfig.json` },
        stdio: ['ignore', full ?? 'pipe', full ?? 'pipe', 'pipe'],
      });
      if (full === undefined) (child.stdout!.destroy(), child.stderr!.destroy());
      let out = '';
      (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (out += d.toString())).on('error', () => {});
      const exit = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
      const status = await Promise.race([exit, sleep(30_000).then(() => 'hung' as const)]);
      if (status === 'hung') child.kill('SIGKILL');
      expect(status).toBe(0);
      expect(JSON.parse(out)).toEqual({ failing: dest === 'full' ? 'ENOSPC' : 'EPIPE' });
    }, 60_000);
  }
});

describe('ringfenced with a log destination that takes nothing', () => {
  // This host has no AF_ALG, so the daemon logs why it cannot start, and exits 1: it must exit.
  for (const [name, stdout] of [['a full disk (/dev/full)', 'full'], ['a pipe whose reader is gone', 'closed pipe']] as const) {
    it(`${name}: the daemon still exits, and says why on stderr`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'rf-full-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const full = stdout === 'full' ? openSync('/dev/full', 'w') : undefined;
      if (full !== undefined) cleanups.push(() => closeSync(full));
      const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin/ringfenced'), '--state-dir', join(dir, 'state'), '--socket', join(dir, 's.sock'), '--policy', join(dir, 'policy.json')], { stdio: ['ignore', full ?? 'pipe', 'pipe'] });
      if (full === undefined) child.stdout!.destroy();
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      // With pino's own destination the daemon hung here for good, writing its last line every 100 ms.
      const code = await Promise.race([exit, sleep(20_000).then(() => 'hung' as const)]);
      if (code === 'hung') child.kill('SIGKILL');
      expect(code).toBe(1);
      expect(err).toContain('ringfenced: cannot start: this kernel has no AF_ALG');
      expect(err).toContain(stdout === 'full' ? 'cannot write the log and audit trail to fd 1 (ENOSPC)' : "the log and audit trail's destination (fd 1) is gone (EPIPE)");
    }, 60_000);
  }
});
