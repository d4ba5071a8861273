/**
 * The Duplex behind encryptStream() and decryptStream(): bytes written are cut into chunks and sent
 * after a header message; the byte payloads of the responses are what it reads. Backpressure holds
 * both ways (the daemon's flow control reaches the writer; a slow reader pauses the responses), and
 * the readable side ends only once the daemon sent its `final` response AND the RPC ended OK, so
 * a truncated or failed stream can never look complete.
 */
import * as grpc from '@grpc/grpc-js';
import { Duplex } from 'node:stream';
import { RingfenceError } from './errors.js';
import { CallWriter, limitReadAhead, Rechunker, toBuffer } from './stream-io.js';
import type { StreamCall } from './transport.js';

export const DEFAULT_CHUNK_BYTES = 256 * 1024;
export const MAX_CHUNK_BYTES = 1024 * 1024;

/** The key the daemon reported in the stream's first response. */
export interface StreamKeyInfo {
  keyName: string;
  keyVersion: number;
}

/** What a response carries, whatever the RPC. */
export interface StreamPayload {
  bytes: Uint8Array;
  keyName: string;
  keyVersion: number;
  final: boolean;
}

export function checkChunkBytes(chunkBytes: number | undefined): number {
  const n = chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CHUNK_BYTES) throw new RangeError(`chunkBytes must be an integer from 1 to ${MAX_CHUNK_BYTES}, got ${chunkBytes}`);
  return n;
}

export abstract class RpcDuplex<Req, Res> extends Duplex {
  /** The key that encrypts or decrypts, once the first response arrived; rejects if the RPC fails first. */
  readonly key: Promise<StreamKeyInfo>;
  private resolveKey!: (info: StreamKeyInfo) => void;
  private rejectKey!: (err: RingfenceError) => void;
  private readonly rechunker: Rechunker;
  private readonly writer: CallWriter<Req>;
  private sawFirst = false;
  private sawFinal = false;
  private readEnded = false;
  private statusOk = false;
  private over = false;

  protected constructor(
    private readonly rpc: StreamCall<grpc.ClientDuplexStream<Req, Res>>,
    chunkBytes: number,
    header: Req,
  ) {
    super({ readableHighWaterMark: chunkBytes, writableHighWaterMark: chunkBytes });
    this.key = new Promise<StreamKeyInfo>((resolve, reject) => {
      this.resolveKey = resolve;
      this.rejectKey = reject;
    });
    this.key.catch(() => {}); // reported through 'error' too; unobserved is fine
    this.rechunker = new Rechunker(chunkBytes);
    const { call } = rpc;
    this.writer = new CallWriter<Req>(call);
    limitReadAhead(call);
    call.on('data', (res: Res) => this.onResponse(res));
    call.on('end', () => {
      this.readEnded = true;
      this.maybeEnd();
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code !== grpc.status.OK) return; // 'error' follows
      this.statusOk = true;
      this.maybeEnd();
    });
    call.on('error', (err: unknown) => this.fail(rpc.toError(err)));
    void this.writer.write(header);
  }

  /** A chunk message carrying `piece`; `final` only on the piece sent at end(). */
  protected abstract chunk(piece: Buffer, final: boolean): Req;
  /** Hold back the last bytes until end() (EncryptStream marks the last chunk final). */
  protected abstract readonly holdBackLast: boolean;
  protected abstract payload(res: Res): StreamPayload;

  override _write(data: Buffer | string, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.rechunker.push(typeof data === 'string' ? Buffer.from(data, encoding) : data);
    this.sendPieces(this.rechunker.take(this.holdBackLast), false).then(() => {
      this.rechunker.keep(); // the caller may reuse its buffer once called back
      callback();
    }, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    const last = this.rechunker.rest();
    // EncryptStream always ends with a final chunk (possibly empty); DecryptStream just stops.
    this.sendPieces(last.length > 0 || this.holdBackLast ? [last] : [], true).then(() => {
      if (!this.over) this.rpc.call.end();
      callback();
    }, callback);
  }

  /**
   * `for await` gives Buffers: Readable declares `any`, which reached the caller's code unchecked
   * (review by helper-178). After setEncoding() it gives strings, which this type does not follow.
   */
  override [Symbol.asyncIterator](): NodeJS.AsyncIterator<Buffer> {
    return super[Symbol.asyncIterator]();
  }

  override _read(): void {
    if (this.rpc.call.isPaused()) this.rpc.call.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.over) {
      // Destroyed by its user (or a pipeline) mid-way: tell the daemon to stop.
      this.over = true;
      this.writer.stop();
      this.rpc.release();
      this.rpc.call.cancel();
      this.rejectKey(new RingfenceError({ code: grpc.status.CANCELLED, message: 'stream destroyed before it completed', rpc: this.rpc.rpc }));
    }
    // The input not yet sent is never sent now: our copies of it are zeroed rather than kept until
    // the stream object is collected. (Output not yet read stays as it is: Node still hands a
    // destroyed stream's buffered chunks to a reader, found by review: helper-127.)
    this.rechunker.discard();
    callback(err);
  }

  private async sendPieces(pieces: Iterable<Buffer>, final: boolean): Promise<void> {
    for (const piece of pieces) {
      if (this.over) return;
      await this.writer.write(this.chunk(piece, final));
    }
  }

  private onResponse(res: Res): void {
    if (this.over) return;
    const p = this.payload(res);
    if (this.sawFinal) return this.fail(this.protocolError('the daemon sent data after the final response'));
    if (!this.sawFirst) {
      this.sawFirst = true;
      this.resolveKey({ keyName: p.keyName, keyVersion: p.keyVersion });
      this.emit('key', { keyName: p.keyName, keyVersion: p.keyVersion });
    }
    this.sawFinal = p.final;
    if (p.bytes.length > 0 && !this.push(toBuffer(p.bytes))) this.rpc.call.pause();
  }

  private maybeEnd(): void {
    if (this.over || !this.readEnded || !this.statusOk) return;
    if (!this.sawFinal) return this.fail(this.protocolError('the RPC ended without a final response: the output is incomplete'));
    this.over = true;
    this.writer.stop();
    this.rpc.release();
    this.push(null);
  }

  private fail(err: RingfenceError): void {
    if (this.over) return;
    this.over = true;
    this.writer.stop();
    this.rpc.release();
    this.rpc.call.cancel(); // no-op once the RPC has its status
    this.rejectKey(err);
    this.destroy(err);
  }

  private protocolError(message: string): RingfenceError {
    return new RingfenceError({ code: grpc.status.INTERNAL, message, rpc: this.rpc.rpc });
  }
}
