/**
 * RingfenceClient: the typed client of the ringfence daemon over its Unix socket. Unary methods
 * take plain arguments and return the generated response messages; streams are node:stream
 * Duplexes; session() pipelines many small operations over one stream.
 */
import type * as grpc from '@grpc/grpc-js';
import type {
  BatchComputeMacResponse,
  BatchDecryptResponse,
  BatchEncryptResponse,
} from '../../gen/ringfence/v1/batch_pb.js';
import type * as pb from '../../gen/ringfence/v1/crypto_pb.js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { StatusService, type GetStatusResponse } from '../../gen/ringfence/v1/status_service_pb.js';
import { clientSocketCandidates, clientSocketPath } from '../../rpc/socket-path.js';
import type { CallOptions } from './call-options.js';
import { DecryptStream, type DecryptStreamOptions } from './decrypt-stream.js';
import { EncryptStream, type EncryptStreamOptions } from './encrypt-stream.js';
import { hashStream, type HashSource, type HashStreamOptions } from './hash-stream.js';
import { KeyMethods } from './key-methods.js';
import * as req from './requests.js';
import { checkChunkBytes } from './rpc-duplex.js';
import { RingfenceSession, type SessionOptions } from './session.js';
import { Transport } from './transport.js';

/**
 * One item of batchEncrypt / batchDecrypt / batchComputeMac: the arguments of its unary method,
 * checked as they are (an item without its data was the encryption or MAC of nothing).
 */
export interface BatchEncryptItem {
  keyName: string;
  plaintext: req.Data;
  associatedData?: req.Data;
}
export interface BatchDecryptItem {
  ciphertext: req.CiphertextInput;
  associatedData?: req.Data;
}
export interface BatchComputeMacItem {
  keyName: string;
  data: req.Data;
}

export interface RingfenceClientOptions {
  /** Default (clientSocketPath): RINGFENCE_SOCKET; else /run/ringfence/ringfence.sock as root;
   * else the user's own daemon's $XDG_RUNTIME_DIR/ringfence.sock if it exists, else the system
   * daemon's /run/ringfence/ringfence.sock if that exists, else the former (or, without an
   * XDG_RUNTIME_DIR, the latter). Without RINGFENCE_SOCKET, a client whose chosen socket is gone
   * when it (re)connects moves to the other one if that exists. A path given here, or in
   * RINGFENCE_SOCKET, is kept. */
  socketPath?: string;
  /** Timeout of unary calls and session operations unless a call says otherwise; default 30 s;
   * 0 or Infinity: none. Streams have no default timeout. */
  defaultTimeoutMs?: number;
  /** Merged over the SDK's defaults (send 4 MiB + 64 KiB, receive 64 MiB). A receive limit below 64 KiB is refused (RangeError). */
  grpcOptions?: grpc.ChannelOptions;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export class RingfenceClient extends KeyMethods {
  private readonly sessions = new Set<RingfenceSession>();
  private defaultSession: RingfenceSession | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;

  constructor(opts: RingfenceClientOptions = {}) {
    const uid = process.getuid?.() ?? -1;
    const socketPath = opts.socketPath ?? clientSocketPath(process.env, uid);
    const candidates = opts.socketPath === undefined ? clientSocketCandidates(process.env, uid) : [];
    super(new Transport(socketPath, opts.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS, opts.grpcOptions, candidates));
  }

  /** The daemon's socket calls go to now (it changes only for a client given none: see socketPath in the options). */
  get socketPath(): string {
    return this.transport.socketPath;
  }

  // ---- CryptoService, unary ----

  async encrypt(keyName: string, plaintext: req.Data, opts: req.EncryptOptions & CallOptions = {}): Promise<pb.EncryptResponse> {
    return this.transport.unary(CryptoService.method.encrypt, req.encryptRequest(keyName, plaintext, opts), opts);
  }

  /** `ciphertext`: bytes, or the text form "ringfence:v1:...". */
  async decrypt(ciphertext: req.CiphertextInput, opts: req.DecryptOptions & CallOptions = {}): Promise<pb.DecryptResponse> {
    return this.transport.unary(CryptoService.method.decrypt, req.decryptRequest(ciphertext, opts), opts);
  }

  async reEncrypt(ciphertext: req.CiphertextInput, opts: req.ReEncryptOptions & CallOptions = {}): Promise<pb.ReEncryptResponse> {
    return this.transport.unary(CryptoService.method.reEncrypt, req.reEncryptRequest(ciphertext, opts), opts);
  }

  async generateDataKey(keyName: string, opts: req.GenerateDataKeyOptions & CallOptions = {}): Promise<pb.GenerateDataKeyResponse> {
    return this.transport.unary(CryptoService.method.generateDataKey, req.generateDataKeyRequest(keyName, opts), opts);
  }

  async computeMac(keyName: string, data: req.Data, opts: CallOptions = {}): Promise<pb.ComputeMacResponse> {
    return this.transport.unary(CryptoService.method.computeMac, req.computeMacRequest(keyName, data), opts);
  }

  /** A wrong MAC resolves with `valid: false`; only failures to verify reject. */
  async verifyMac(keyName: string, data: req.Data, mac: Uint8Array, opts: req.VerifyMacOptions & CallOptions = {}): Promise<pb.VerifyMacResponse> {
    return this.transport.unary(CryptoService.method.verifyMac, req.verifyMacRequest(keyName, data, mac, opts), opts);
  }

  /** `algorithm`: HashAlgorithm or its name ('sha256', 'sha3-256', 'blake2b-512', ...); default sha256. */
  async hash(data: req.Data, algorithm?: req.HashAlgorithmInput, opts: CallOptions = {}): Promise<pb.HashResponse> {
    return this.transport.unary(CryptoService.method.hash, req.hashRequest(data, algorithm), opts);
  }

  /** Hashes a source of any size (sent in pieces of `pieceBytes`, default 1 MiB, with backpressure).
   * If the source throws, the RPC is cancelled and the source's error rethrown. */
  async hashStream(source: HashSource, algorithm?: req.HashAlgorithmInput, opts: HashStreamOptions = {}): Promise<pb.HashStreamResponse> {
    return hashStream(this.transport, source, algorithm, opts);
  }

  async generateRandom(lengthBytes: number, opts: CallOptions = {}): Promise<pb.GenerateRandomResponse> {
    return this.transport.unary(CryptoService.method.generateRandom, req.generateRandomRequest(lengthBytes), opts);
  }

  // ---- batches: one result per item, in order; see batchResults() ----

  async batchEncrypt(items: BatchEncryptItem[], opts: CallOptions = {}): Promise<BatchEncryptResponse> {
    const requests = req.itemsOf(items, 'batchEncrypt').map((i) => req.encryptRequest(i.keyName, i.plaintext, i));
    return this.transport.unary(CryptoService.method.batchEncrypt, { requests }, opts);
  }

  async batchDecrypt(items: BatchDecryptItem[], opts: CallOptions = {}): Promise<BatchDecryptResponse> {
    const requests = req.itemsOf(items, 'batchDecrypt').map((i) => req.decryptRequest(i.ciphertext, i));
    return this.transport.unary(CryptoService.method.batchDecrypt, { requests }, opts);
  }

  async batchComputeMac(items: BatchComputeMacItem[], opts: CallOptions = {}): Promise<BatchComputeMacResponse> {
    const requests = req.itemsOf(items, 'batchComputeMac').map((i) => req.computeMacRequest(i.keyName, i.data));
    return this.transport.unary(CryptoService.method.batchComputeMac, { requests }, opts);
  }

  // ---- streams ----

  /** Write plaintext, read the stream ciphertext; `await stream.key` (or the 'key' event) gives the
   * key name and version. The ciphertext is complete only when the readable side ends. */
  encryptStream(keyName: string, opts: EncryptStreamOptions = {}): EncryptStream {
    checkChunkBytes(opts.chunkBytes); // before the RPC starts
    if (opts.associatedData !== undefined) req.toBytes(opts.associatedData); // its TypeError too
    req.nameOf(keyName, 'the key name');
    return new EncryptStream(this.transport.bidi(CryptoService.method.encryptStream, opts), keyName, opts);
  }

  /** Write a stream ciphertext (any slicing), read the plaintext. If the Duplex errors, discard
   * everything it produced: only a readable side that ended means the whole stream authenticated. */
  decryptStream(opts: DecryptStreamOptions = {}): DecryptStream {
    checkChunkBytes(opts.chunkBytes);
    if (opts.associatedData !== undefined) req.toBytes(opts.associatedData);
    return new DecryptStream(this.transport.bidi(CryptoService.method.decryptStream, opts), opts);
  }

  // ---- pipelining ----

  /** A new pipelined session (one Session stream); close it when done. */
  session(opts: SessionOptions = {}): RingfenceSession {
    const session = new RingfenceSession(this.transport, opts, () => this.sessions.delete(session));
    // A session made while the client closes is closed too: its operations fail at once (CANCELLED;
    // once the channel is closed they fail as every call does, "the client is closed").
    if (this.closing && !this.closed) void session.close();
    else this.sessions.add(session);
    return session;
  }

  /** A shared session, created on first use and closed by close(). */
  get pipelined(): RingfenceSession {
    // A default session that was aborted or closed is replaced by a fresh one.
    if (!this.defaultSession || !this.sessions.has(this.defaultSession)) this.defaultSession = this.session();
    return this.defaultSession;
  }

  // ---- StatusService ----

  async getStatus(opts: CallOptions = {}): Promise<GetStatusResponse> {
    return this.transport.unary(StatusService.method.getStatus, {}, opts);
  }

  /**
   * Closes the sessions this client made (waiting for their operations to settle), then the
   * channel. Streams still running are not waited for: finish them first.
   */
  close(): Promise<void> {
    // Once: a second close() waits for the first (found by review, helper-110: it closed the channel
    // under operations the first was still waiting for).
    this.closing ??= (async () => {
      const sessions = [...this.sessions];
      this.sessions.clear();
      this.defaultSession = undefined;
      await Promise.all(sessions.map((s) => s.close()));
      this.transport.close();
      this.closed = true;
    })();
    return this.closing;
  }

  /** close(), for `await using client = new RingfenceClient()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
