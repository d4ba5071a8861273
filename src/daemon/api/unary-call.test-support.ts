/**
 * Unary CryptoService calls against a real grpc-js server with the daemon's server options, two
 * or more callers told apart by their socket, and a buffer budget (unary-budget.test.ts,
 * unary-drain.test.ts). Raw HTTP/2 clients send Encrypt requests and never read the answers,
 * which HTTP/2 flow control then keeps in the daemon.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { EncryptRequestSchema } from '../../gen/ringfence/v1/crypto_pb.js';
import { DEFAULT_LIMITS } from '../config.js';
import { serverOptions } from '../daemon.js';
import { standInContext } from '../ops/stand-in.test-support.js';
import type { AuditEntry } from './audit.js';
import { cryptoServiceHandlers } from './crypto-service.js';
import { daemonServiceDefinition } from './decode.js';
import type { Drain } from './drain.js';
import type { MemoryBudget } from './memory-budget.js';
import { UidSockets } from './uid-sockets.test-support.js';

export const ENCRYPT = '/ringfence.v1.CryptoService/Encrypt';

export const encryptRequest = (bytes: number, keyName = 'k'): Buffer => Buffer.from(toBinary(EncryptRequestSchema, create(EncryptRequestSchema, { keyName, plaintext: new Uint8Array(bytes) })));
export const framed = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0, body.length >>> 24, (body.length >>> 16) & 255, (body.length >>> 8) & 255, body.length & 255]), body]);

export interface Raw {
  req: http2.ClientHttp2Stream;
  session: http2.ClientHttp2Session;
  /** The daemon began its answer (its response headers came). */
  answered: () => boolean;
}

export class UnaryWorld {
  readonly callers: UidSockets;
  readonly audit: AuditEntry[] = [];
  readonly logError = vi.fn();
  private server: grpc.Server | undefined;
  private readonly raws: Raw[] = [];
  private readonly clients: grpc.Client[] = [];

  constructor(
    uids: number[],
    readonly budget: MemoryBudget,
    readonly drain?: Drain,
  ) {
    this.callers = new UidSockets(uids);
  }

  /** Serves CryptoService with the daemon's handlers, every caller allowed everything. */
  async start(): Promise<void> {
    const ctx = await standInContext({ budget: this.budget, ...(this.drain && { drain: this.drain }) });
    const deps = { audit: (e: AuditEntry) => void this.audit.push(e), log: { error: this.logError, warn: vi.fn() }, access: this.callers.access } as never;
    this.server = new grpc.Server(serverOptions(DEFAULT_LIMITS));
    this.server.addService(daemonServiceDefinition(CryptoService, DEFAULT_LIMITS.maxBatchItems), cryptoServiceHandlers(ctx, deps));
    await this.callers.serve(this.server);
  }

  /** A call to `path` on a connection of its own from `uid`, nothing sent yet. */
  open(uid: number, path: string, extra: http2.OutgoingHttpHeaders = {}): Raw {
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(this.callers.paths[uid]!) });
    session.on('error', () => {});
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
    req.on('error', () => {});
    let answered = false;
    req.once('response', () => (answered = true));
    const raw = { req, session, answered: () => answered };
    this.raws.push(raw);
    return raw;
  }

  /** A whole Encrypt call of `bytes` of plaintext whose answer is never read. */
  unread(uid: number, bytes: number, extra: http2.OutgoingHttpHeaders = {}): Raw {
    const raw = this.open(uid, ENCRYPT, extra);
    raw.req.end(framed(encryptRequest(bytes)));
    return raw;
  }

  /** An Encrypt from a grpc-js client that reads its answer; resolves with its error, or null. */
  encrypt(uid: number, bytes: number, deadline?: number): Promise<grpc.ServiceError | null> {
    const c = new grpc.Client(`unix:${this.callers.paths[uid]}`, grpc.credentials.createInsecure());
    this.clients.push(c);
    const id = (b: Buffer) => b;
    return new Promise((resolve) => c.makeUnaryRequest(ENCRYPT, id, id, encryptRequest(bytes), new grpc.Metadata(), deadline === undefined ? {} : { deadline }, (err) => resolve(err)));
  }

  async until(ok: () => boolean, what: string, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) {
        const held = Object.keys(this.callers.paths).map((uid) => `uid ${uid} ${this.budget.heldBy(`uid:${uid}`)}`);
        throw new Error(`timed out waiting for ${what}; held: ${held.join(', ')}; waiters ${this.budget.waiters}, audited ${this.audit.length}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Ends every call the test made and waits until the budget holds nothing. */
  async endCalls(): Promise<void> {
    for (const r of this.raws.splice(0)) r.session.destroy();
    for (const c of this.clients.splice(0)) c.close();
    await this.until(() => this.budget.held === 0 && this.budget.waiters === 0, 'the budget back to nothing');
  }

  close(): void {
    this.server?.forceShutdown();
    this.callers.close();
  }
}
