/**
 * The gRPC ceiling for test/bench/daemon-bench.ts: a plain grpc-js echo server on a Unix socket, run
 * in a process of its own like ringfenced, with raw Buffer (de)serializers (no protobuf) and the
 * daemon's message size limits. Every request starts with the length of the response wanted
 * (uint32 BE); the response is a copy of the request, cut or zero-padded to that length, so the
 * bench can give the echo exactly the request and response sizes of the ringfence call it mirrors.
 *
 * Run: node dist/test/bench/echo-server.js <socket path>   (prints "echo ready" once listening)
 */
import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const raw = (b: Buffer): Buffer => b;

export const ECHO_UNARY: grpc.MethodDefinition<Buffer, Buffer> = {
  path: '/ringfence.bench.Echo/Unary',
  requestStream: false,
  responseStream: false,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
};

export const ECHO_BIDI: grpc.MethodDefinition<Buffer, Buffer> = { ...ECHO_UNARY, path: '/ringfence.bench.Echo/Bidi', requestStream: true, responseStream: true };

/** As ringfenced's server by default (src/daemon/config.ts DEFAULT_LIMITS.maxMessageBytes). */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

/** A request of `requestBytes` bytes asking for a response of `responseBytes` bytes. */
export function echoRequest(requestBytes: number, responseBytes: number): Buffer {
  const b = Buffer.alloc(Math.max(requestBytes, 4), 0x5a);
  b.writeUInt32BE(responseBytes, 0);
  return b;
}

export function echoReply(request: Buffer): Buffer {
  const n = request.readUInt32BE(0);
  const res = Buffer.allocUnsafe(n);
  const copied = request.copy(res, 0, 0, Math.min(n, request.length));
  if (copied < n) res.fill(0, copied);
  return res;
}

export async function startEchoServer(socket: string): Promise<grpc.Server> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': MAX_MESSAGE_BYTES });
  server.addService(
    { unary: ECHO_UNARY, bidi: ECHO_BIDI },
    {
      unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, echoReply(call.request)),
      // Answers each message as it arrives; stops reading while grpc-js holds responses the client
      // is not taking (as the daemon's Session handler does).
      bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        let paused = false;
        call.on('drain', () => {
          if (paused) {
            paused = false;
            call.resume();
          }
        });
        call.on('data', (req: Buffer) => {
          if (!call.write(echoReply(req)) && !paused) {
            paused = true;
            call.pause();
          }
        });
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    },
  );
  rmSync(socket, { force: true });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const socket = process.argv[2];
  if (!socket) {
    process.stderr.write('usage: echo-server <socket path>\n');
    process.exit(2);
  }
  const server = await startEchoServer(socket);
  process.once('SIGTERM', () => {
    server.forceShutdown();
    process.exit(0);
  });
  process.stdout.write('echo ready\n');
}
