/**
 * patches/@grpc+grpc-js+1.14.7.patch (its other change, the advertised encodings, is checked by
 * src/daemon/api/response-encoding.test.ts): grpc-js 1.14.7 ends a call by itself when a client's message
 * breaks a limit (here a length prefix over grpc.max_receive_message_length) and, once response
 * headers are out, sends that status as trailers after the response's last DATA frame. The client's
 * half-close is still handed to the handler, which may answer it; that write came after grpc-js's
 * end() of the HTTP/2 stream, errored the stream, and the trailers never went out: the client waited
 * forever (seen as a 60 s hang in test/e2e/hostile.kernel.test.ts on a slow guest). With the patch the
 * late answer is dropped and the client gets RESOURCE_EXHAUSTED.
 *
 * The order is forced here: the first answer is larger than the client's HTTP/2 window and the
 * client does not read it, so grpc-js's end() waits behind it while the handler answers the half-close.
 */
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { grpcFrame } from '../support/raw-grpc.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

it('a handler answering the half-close after grpc-js ended the call does not cost the client its status', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rf-grpc-patch-'));
  const socket = join(dir, 's.sock');
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 1 << 20 });
  const pass = (b: Buffer) => b;
  let lateAnswerWritten = false;
  server.addService({ m: { path: '/t.S/M', requestStream: true, responseStream: true, requestSerialize: pass, requestDeserialize: pass, responseSerialize: pass, responseDeserialize: pass } } as never, {
    m: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('error', () => undefined);
      call.once('data', () => call.write(Buffer.alloc(200_000)));
      call.on('end', () => {
        call.write(Buffer.from('late answer'));
        lateAnswerWritten = true;
        call.end();
      });
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket) });
  session.on('error', () => undefined);
  cleanup.push(() => (session.destroy(), server.forceShutdown(), rmSync(dir, { recursive: true, force: true })));

  const stream = session.request({ ':method': 'POST', ':path': '/t.S/M', 'content-type': 'application/grpc', te: 'trailers' });
  let status: string | undefined;
  let message = '';
  const take = (h: http2.IncomingHttpHeaders) => {
    if (h['grpc-status'] !== undefined) [status, message] = [String(h['grpc-status']), decodeURIComponent(String(h['grpc-message'] ?? ''))];
  };
  stream.on('response', take);
  stream.on('trailers', take);
  const closed = new Promise<string>((resolve) => stream.on('close', () => resolve('closed')));
  stream.write(grpcFrame(Buffer.alloc(20)));
  await new Promise((r) => stream.once('response', r));
  // The first answer now waits on our window; then a message declaring 4 GiB, and our half-close.
  stream.end(grpcFrame(Buffer.alloc(10), { declaredLength: 0xfffffff0 }));
  await expect.poll(() => lateAnswerWritten, { timeout: 5000 }).toBe(true);
  let received = 0;
  stream.on('data', (b: Buffer) => (received += b.length));

  const outcome = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r('no status after 5 s'), 5000))]);
  expect(outcome).toBe('closed');
  expect(status).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
  expect(message).toMatch(/larger than max/);
  // The first answer arrived whole; the late one was dropped.
  expect(received).toBe(5 + 200_000);
});
