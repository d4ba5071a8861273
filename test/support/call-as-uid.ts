/**
 * One gRPC call over raw HTTP/2 from a process of another uid, for tests of what one caller can do
 * to another. The child is plain node with builtins only (a tsx child takes 20-40 s to start in
 * the emulated guests); the parent encodes the messages. The child sends them and either ends the
 * call and reports its status ('finish'), or holds the call open, reading nothing, until killed ('hold').
 */
import { spawn } from 'node:child_process';
import { grpcFrame } from './raw-grpc.js';

export interface CallOutcome {
  /** grpc-status, as sent. */
  status?: string;
  message?: string;
  error?: string;
}

export interface CallAsUid {
  /** Resolves once every message was handed to the connection ('hold'). */
  sent: Promise<void>;
  /** The call's outcome ('finish'); rejects if the child exits without one. */
  outcome: Promise<CallOutcome>;
  kill(): void;
}

const CHILD = `
import http2 from 'node:http2';
import net from 'node:net';
const c = JSON.parse(process.env.RF_CALL);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const session = http2.connect('http://localhost', { createConnection: () => net.connect(c.socket) });
session.on('error', (e) => out({ error: e.message }));
const stream = session.request({ ':method': 'POST', ':path': c.path, 'content-type': 'application/grpc', te: 'trailers' });
stream.on('error', (e) => out({ error: e.message }));
let status, message;
const take = (h) => {
  if (h['grpc-status'] === undefined) return;
  status = String(h['grpc-status']);
  message = decodeURIComponent(String(h['grpc-message'] ?? ''));
};
stream.on('response', take);
stream.on('trailers', take);
const frames = c.frames.map((b) => Buffer.from(b, 'base64'));
if (c.mode === 'hold') {
  stream.pause();
  frames.forEach((f, i) => stream.write(f, i === frames.length - 1 ? () => out({ sent: true }) : undefined));
} else {
  for (const f of frames) stream.write(f);
  stream.end();
  stream.on('data', () => undefined);
  stream.on('close', () => {
    out({ status, message });
    session.close();
  });
}
`;

export function callAsUid(uid: number, socket: string, path: string, messages: Uint8Array[], mode: 'finish' | 'hold'): CallAsUid {
  const frames = messages.map((m) => grpcFrame(Buffer.from(m)).toString('base64'));
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    cwd: '/',
    uid,
    gid: uid,
    env: { PATH: process.env.PATH, HOME: '/tmp', RF_CALL: JSON.stringify({ socket, path, frames, mode }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const lines = new Promise<never>((_, reject) => child.on('exit', (code, signal) => reject(new Error(`the uid ${uid} client exited (${code ?? signal}) without an answer; stdout: ${stdout.slice(-500)} stderr: ${stderr.slice(-1500)}`))));
  lines.catch(() => undefined);
  const next = (want: (o: CallOutcome & { sent?: boolean }) => boolean) =>
    Promise.race([
      new Promise<CallOutcome & { sent?: boolean }>((resolve) => {
        child.stdout.on('data', (b: Buffer) => {
          stdout += b.toString();
          for (const line of stdout.split('\n')) {
            if (!line.trim()) continue;
            const o = JSON.parse(line) as CallOutcome & { sent?: boolean };
            if (want(o)) resolve(o);
          }
        });
      }),
      lines,
    ]);
  const sent = next((o) => o.sent === true || o.error !== undefined).then((o) => {
    if (o.error !== undefined) throw new Error(`the uid ${uid} client failed: ${o.error}`);
  });
  const outcome = next((o) => o.status !== undefined || o.error !== undefined);
  // A held call is killed without an outcome: that rejection is only an error for whoever awaits it.
  sent.catch(() => undefined);
  outcome.catch(() => undefined);
  return {
    sent,
    outcome,
    kill: () => child.kill('SIGKILL'),
  };
}
