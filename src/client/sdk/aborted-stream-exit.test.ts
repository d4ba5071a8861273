/**
 * A stream call aborted before grpc-js started it must not keep the caller's process alive after
 * `close()` (review by helper-213): grpc-js 1.14 keeps the connection's handle of a client-streaming
 * call cancelled before its start and never half-closed, so a hashStream given an aborted signal
 * (or aborted in the same turn) held its process alive for good. Run in a child process: whether a
 * process exits is the thing tested.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { REPO } from '../commands/cli-runner.test-support.js';
import { startFakeDaemon, type FakeDaemon } from '../commands/fake-daemon.test-support.js';

let daemon: FakeDaemon;
let dir: string;
beforeAll(async () => {
  daemon = await startFakeDaemon();
  dir = mkdtempSync(join(REPO, 'node_modules/.cache/aborted-stream-exit-'));
});
afterAll(async () => {
  await daemon?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** How long after printing "closed" the child may take to exit. */
const EXIT_WITHIN_MS = 10_000;

/** Runs `body` (top-level await; `client` and `source()` given) in a child; resolves with its output, or says it did not exit. */
function runChild(body: string): Promise<{ code: number | null; out: string; lingered: boolean }> {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(
    script,
    `import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import { RingfenceClient } from ${JSON.stringify(join(REPO, 'src/client/sdk/index.ts'))};
const client = new RingfenceClient({ socketPath: ${JSON.stringify(daemon.socketPath)} });
const source = () => createReadStream('/proc/self/status');
const endless = () => { const s = new PassThrough(); s.write('x'); return s; }; // never ends
await client.getStatus(); // the channel is connected: a call made now starts at once
${body}
await client.getStatus();
await client.close();
console.log('closed');
`,
  );
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let lingered = false;
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('closed') && !timer) timer = setTimeout(() => ((lingered = true), child.kill('SIGKILL')), EXIT_WITHIN_MS);
    });
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, lingered });
    });
  });
}

test.each([
  ['a signal aborted before the call', "const ac = new AbortController(); ac.abort(); const s = source(); console.log(await client.hashStream(s, 'sha256', { signal: ac.signal }).catch((e) => e.codeName), s.destroyed ? '(source destroyed)' : '(source left open)');"],
  ['a signal aborted in the same turn as the call', "const ac = new AbortController(); const p = client.hashStream(source(), 'sha256', { signal: ac.signal }); ac.abort(); console.log(await p.catch((e) => e.codeName));"],
  ['a signal aborted once the call started', "const ac = new AbortController(); const p = client.hashStream(endless(), 'sha256', { signal: ac.signal }); setTimeout(() => ac.abort(), 50); console.log(await p.catch((e) => e.codeName));"],
])('hashStream with %s rejects CANCELLED, and the process exits after close()', { timeout: 60_000 }, async (_, body) => {
  const r = await runChild(body);
  expect({ lingered: r.lingered, code: r.code, out: r.out.trim() }).toEqual({ lingered: false, code: 0, out: body.includes('s.destroyed') ? 'CANCELLED (source destroyed)\nclosed' : 'CANCELLED\nclosed' });
});

const streamed = (make: string) =>
  `const ac = new AbortController(); ${make}; const s = make(ac.signal); const ended = new Promise((resolve) => s.on('error', (e) => resolve(e.codeName)).on('close', () => resolve('closed without error'))); s.resume(); ac.abort(); console.log(await ended);`;

test.each([
  ['encryptStream', streamed("const make = (signal) => client.encryptStream('k', { signal })")],
  ['decryptStream', streamed('const make = (signal) => client.decryptStream({ signal })')],
])('%s aborted in the same turn errors CANCELLED, and the process exits after close()', { timeout: 60_000 }, async (_, body) => {
  const r = await runChild(body);
  expect({ lingered: r.lingered, code: r.code, out: r.out.trim() }).toEqual({ lingered: false, code: 0, out: 'CANCELLED\nclosed' });
});
