/**
 * Where the CPU of a ringfence call goes, process by process (`npm run bench:split`). On the one-vCPU
 * guest every process shares the CPU, so the bench's ratios are sums of CPU per operation; this
 * splits that sum into the daemon's, the echo server's and the client's (this process) share, read
 * from /proc/<pid>/stat (utime + stime) and process.cpuUsage() around each cell.
 *
 * Cells, each one at a time (1 in flight) unless named x256 (256 in flight, as the bench's session):
 *   echo unary          grpc-js echo, 1034 B -> 1088 B (the bench's unary ceiling)
 *   raw Encrypt         a plain grpc-js client calling the daemon's Encrypt (no SDK)
 *   raw Encrypt, no key the same for a key that does not exist: the daemon's gRPC path without the seal
 *   SDK encrypt         RingfenceClient.encrypt, as the bench's unary cell
 *   echo bidi x256      grpc-js echo of one 1 KiB operation per message (the bench's session ceiling)
 *   SDK session x256    RingfenceSession.encrypt, as the bench's session cell
 *   echo stream 1 MiB   grpc-js bidi echo of 1 MiB messages (the bench's streaming ceiling); ops: messages
 *   SDK encryptStream   encryptStream in 1 MiB chunks, as the bench's stream cell; ops: chunks back
 * Prints a table; asserts nothing. Per-process CPU comes from 10 ms clock ticks: read it as a
 * share, not to the microsecond.
 *
 * Options: RINGFENCE_BENCH_SECONDS [3] per cell and round, RINGFENCE_BENCH_ROUNDS [3].
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RingfenceClient, type RingfenceSession } from '../../src/client/sdk/index.js';
import { CallWriter, limitReadAhead } from '../../src/client/sdk/stream-io.js';
import { HEADER_BYTES } from '../../src/daemon/ciphertext/envelope.js';
import { CHUNK_PREFIX_BYTES } from '../../src/daemon/ciphertext/stream-format.js';
import { EncryptRequestSchema } from '../../src/gen/ringfence/v1/crypto_pb.js';
import { EncryptStreamRequestSchema, EncryptStreamResponseSchema } from '../../src/gen/ringfence/v1/stream_pb.js';
import { CryptoService } from '../../src/gen/ringfence/v1/crypto_service_pb.js';
import { methodDefinition } from '../../src/rpc/service-definition.js';
import { ECHO_BIDI, ECHO_UNARY, echoRequest } from './echo-server.js';

const SECONDS = Number(process.env.RINGFENCE_BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.RINGFENCE_BENCH_ROUNDS ?? 3);
const DEPTH = 256;
const KiB = 1024;
const MiB = 1024 * KiB;
/** As the SDK's channel options and unary deadline (src/client/sdk/transport.ts, client.ts). */
const CHANNEL: grpc.ChannelOptions = { 'grpc.max_send_message_length': 4 * MiB + 64 * KiB, 'grpc.max_receive_message_length': 16 * MiB };
const TIMEOUT_MS = 30_000;
/** Linux reports process times in USER_HZ ticks, 100 per second on every architecture it runs on. */
const MS_PER_TICK = 10;

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const work = mkdtempSync(join(tmpdir(), 'rf-split-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

function start(args: string[], log: string): ChildProcess {
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
  children.push(child);
  return child;
}

async function waitFor(log: string, marker: string, what: string): Promise<void> {
  const until = Date.now() + 180_000;
  while (Date.now() < until) {
    try {
      if (readFileSync(log, 'utf8').includes(marker)) return;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not start within 180 s; its output:\n${readFileSync(log, 'utf8')}`);
}

/** CPU time of a process so far, in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * MS_PER_TICK;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const daemonLog = join(work, 'daemon.log');
const echoLog = join(work, 'echo.log');
const rfSocket = join(work, 'rf.sock');
const echoSocket = join(work, 'echo.sock');
const daemon = start([join(root, 'dist/ringfenced.mjs'), '--socket', rfSocket, '--state-dir', join(work, 'state'), '--log-level', 'info'], daemonLog);
const echo = start([join(here, 'echo-server.js'), echoSocket], echoLog);
await waitFor(echoLog, 'echo ready', 'the echo server');
await waitFor(daemonLog, '"msg":"ringfenced ready"', 'ringfenced');

const client = new RingfenceClient({ socketPath: rfSocket });
await client.createKey('bench');
const raw = new grpc.Client(`unix:${rfSocket}`, grpc.credentials.createInsecure(), CHANNEL);
const echoClient = new grpc.Client(`unix:${echoSocket}`, grpc.credentials.createInsecure(), CHANNEL);
const P1K = randomBytes(KiB);
const encrypt = methodDefinition(CryptoService.method.encrypt);
const unary = <T, R>(c: grpc.Client, def: grpc.MethodDefinition<T, R>, req: T) =>
  new Promise<void>((resolve, reject) =>
    c.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, new grpc.Metadata(), { deadline: Date.now() + TIMEOUT_MS }, (err) => (err ? reject(err) : resolve())),
  );
const rawRequest = (keyName: string) => create(EncryptRequestSchema, { keyName, plaintext: P1K });

// The session's ceiling: one bidi stream, one operation per message, writes held on 'drain'.
const echoStream = echoClient.makeBidiStreamRequest(ECHO_BIDI.path, ECHO_BIDI.requestSerialize, ECHO_BIDI.responseDeserialize, new grpc.Metadata(), { deadline: Infinity });
const echoWaiters: (() => void)[] = [];
let echoHead = 0;
let echoBlocked: Promise<void> | undefined;
echoStream.on('data', () => echoWaiters[echoHead++]?.());
echoStream.on('error', () => {});
const ECHO_SESSION_MESSAGE = echoRequest(1041, 1095);
async function echoOperation(): Promise<void> {
  while (echoBlocked) await echoBlocked;
  const answered = new Promise<void>((resolve) => echoWaiters.push(resolve));
  if (!echoStream.write(ECHO_SESSION_MESSAGE)) echoBlocked = new Promise<void>((r) => echoStream.once('drain', () => r())).then(() => (echoBlocked = undefined));
  return answered;
}
// The streaming cells, as the bench's: 1 MiB writes for `seconds`, then the end; counted by what came back.
const P1M = randomBytes(MiB);
const envelopeOverhead = (await client.encrypt('bench', P1K)).ciphertext.length - KiB;
const ECHO_STREAM_MESSAGE = echoRequest(
  toBinary(EncryptStreamRequestSchema, create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: P1M } } })).length,
  toBinary(EncryptStreamResponseSchema, create(EncryptStreamResponseSchema, { ciphertext: Buffer.alloc(MiB + CHUNK_PREFIX_BYTES + envelopeOverhead - HEADER_BYTES) })).length,
);
async function echoChunks(seconds: number): Promise<number> {
  const call = echoClient.makeBidiStreamRequest(ECHO_BIDI.path, ECHO_BIDI.requestSerialize, ECHO_BIDI.responseDeserialize, new grpc.Metadata(), { deadline: Infinity });
  limitReadAhead(call);
  const writer = new CallWriter<Buffer>(call);
  let n = 0;
  call.on('data', () => n++);
  const ended = new Promise<void>((resolve, reject) => call.on('status', (st: grpc.StatusObject) => (st.code === grpc.status.OK ? resolve() : reject(new Error(st.details)))));
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) await writer.write(ECHO_STREAM_MESSAGE);
  call.end();
  await ended;
  return n;
}
async function sdkChunks(seconds: number): Promise<number> {
  const s = client.encryptStream('bench', { chunkBytes: MiB });
  let bytes = 0;
  s.on('data', (b: Buffer) => (bytes += b.length));
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) if (!s.write(P1M)) await once(s, 'drain');
  s.end();
  await once(s, 'end');
  return Math.floor(bytes / (MiB + CHUNK_PREFIX_BYTES + envelopeOverhead - HEADER_BYTES));
}

let session: RingfenceSession | undefined;
const sessionOperation = () => (session ??= client.session({ maxInFlight: DEPTH })).encrypt('bench', P1K).then(() => {});

interface Cell {
  name: string;
  depth: number;
  op: () => Promise<unknown>;
  /** A stream cell instead: runs for `seconds` and says how many operations (chunks) it completed. */
  run?: (seconds: number) => Promise<number>;
}
const cells: Cell[] = [
  { name: 'echo unary 1034 B -> 1088 B', depth: 1, op: () => unary(echoClient, ECHO_UNARY, echoRequest(1034, 1088)) },
  { name: 'raw grpc-js Encrypt 1 KiB', depth: 1, op: () => unary(raw, encrypt, rawRequest('bench')) },
  { name: 'raw grpc-js Encrypt, no such key', depth: 1, op: () => unary(raw, encrypt, rawRequest('no-such-key')).catch(() => {}) },
  { name: 'SDK encrypt 1 KiB', depth: 1, op: () => client.encrypt('bench', P1K) },
  { name: `echo bidi 1 op/message x${DEPTH}`, depth: DEPTH, op: echoOperation },
  { name: `SDK session encrypt 1 KiB x${DEPTH}`, depth: DEPTH, op: sessionOperation },
  { name: 'echo bidi stream 1 MiB messages', depth: 1, op: async () => {}, run: echoChunks },
  { name: 'SDK encryptStream 1 MiB chunks', depth: 1, op: async () => {}, run: sdkChunks },
];

interface Round {
  opsPerSecond: number;
  p50: number;
  daemon: number;
  echo: number;
  client: number;
}
async function measure(cell: Cell, seconds: number): Promise<Round> {
  const latencies: number[] = [];
  const before = { daemon: cpuMs(daemon.pid!), echo: cpuMs(echo.pid!), client: process.cpuUsage() };
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const s = performance.now();
      await cell.op();
      latencies.push(performance.now() - s);
    }
  };
  const streamed = cell.run ? await cell.run(seconds) : await Promise.all(Array.from({ length: cell.depth }, loop)).then(() => undefined);
  const elapsed = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(before.client);
  const n = streamed ?? latencies.length;
  return {
    opsPerSecond: n / elapsed,
    p50: streamed === undefined ? median(latencies) : (elapsed * 1000) / n, // a stream: ms per chunk

    daemon: (cpuMs(daemon.pid!) - before.daemon) / n,
    echo: (cpuMs(echo.pid!) - before.echo) / n,
    client: (used.user + used.system) / 1000 / n,
  };
}

const results = new Map<Cell, Round[]>(cells.map((c) => [c, []]));
for (const c of cells) await measure(c, 1); // warmup
for (let round = 0; round < ROUNDS; round++) {
  for (const c of round % 2 === 0 ? cells : [...cells].reverse()) {
    results.get(c)!.push(await measure(c, SECONDS));
    process.stderr.write(`[split] round ${round + 1}/${ROUNDS}: ${c.name}\n`);
  }
}
await session?.close();
await client.close();
raw.close();
echoStream.end();
echoClient.close();
daemon.kill('SIGTERM');
echo.kill('SIGTERM');

const pad = (s: string, n: number) => s.padEnd(n);
const num = (x: number, d = 2) => x.toFixed(d).padStart(8);
console.log(`medians of ${ROUNDS} rounds of ${SECONDS} s; CPU in ms per operation (a stream's: per 1 MiB chunk; its "p50": ms per chunk), by process`);
console.log(`${pad('cell', 38)}    ops/s   p50 ms   daemon     echo   client  all CPU`);
for (const [c, rs] of results) {
  const m = (k: keyof Round) => median(rs.map((r) => r[k]));
  const all = m('daemon') + m('echo') + m('client');
  console.log(`${pad(c.name, 38)} ${num(m('opsPerSecond'), 1)} ${num(m('p50'))} ${num(m('daemon'))} ${num(m('echo'))} ${num(m('client'))} ${num(all)}`);
}
