/**
 * The stream ciphertext of EncryptStream / DecryptStream (contract: proto/ringfence/v1/stream.proto):
 * its byte layout and the encrypting / decrypting state machines. Pure: the AEAD comes in as async
 * seal / open functions, so the daemon plugs in its kernel engine and tests plug in node:crypto.
 *
 * Binary layout (all integers big-endian):
 *   stream ciphertext = header || chunk 0 || chunk 1 || ... || final chunk   (nothing after it)
 *   header (40 bytes) = "RF" | format u8 (=2) | suite u8 | key id (16) | key version u32 | stream id (16)
 *   chunk i           = flags u8 | sealed length u32 | nonce (12) | sealed (sealed length bytes)
 * - magic and suite ids are the unary envelope's (envelope.ts, format 1): the format byte tells the
 *   two kinds apart; the stream id is 16 random bytes per stream; key version is never 0.
 * - flags: bit 0 = final, bits 1..7 must be 0. Exactly one chunk is final, the last (maybe empty).
 * - sealed = AEAD ciphertext || tag, so sealed length = plaintext length + the suite's tag bytes
 *   (16, or 32 for aes-256-ctr-hmac-sha256); each chunk has its own random 12-byte nonce.
 * - chunk i's associated data = header (40) || i as u64 || flags u8 || caller's associated data.
 *   Every part but the last has a fixed size, so the concatenation is unambiguous. Nonce and
 *   sealed length need no AAD: the nonce is an AEAD input and the tag covers the length.
 * Hence a chunk moved, duplicated, dropped mid-stream, taken from another stream (other stream id
 * or key version) or with its final flag flipped fails authentication; a stream ending without its
 * final chunk is truncated.
 */
import { aeadSuite, type AeadSuiteName } from '../../capabilities/suites.js';
import { KEY_ID_BYTES, NONCE_BYTES, SUITE_BY_ID, SUITE_IDS, FORMAT_VERSION as UNARY_FORMAT_VERSION } from './envelope.js';

export const STREAM_FORMAT_VERSION = 2;
const MAGIC = Buffer.from('RF'); // the same as the unary envelope's
export const STREAM_ID_BYTES = 16;
export const STREAM_HEADER_BYTES = MAGIC.length + 1 + 1 + KEY_ID_BYTES + 4 + STREAM_ID_BYTES; // 40
/** flags u8 | sealed length u32 | nonce. */
export const CHUNK_PREFIX_BYTES = 1 + 4 + NONCE_BYTES; // 17
export const FLAG_FINAL = 0x01;
/**
 * Pieces of a unit this large are held as views of the caller's buffer; smaller ones are copied
 * into slabs of this size, so a chunk sent a byte at a time costs its bytes, not a Buffer each.
 */
const PIN_MIN_BYTES = 64 * 1024;

/** The largest chunk any ringfence daemon writes (the top of Limits.max_stream_chunk_bytes' range). */
export const MAX_STREAM_CHUNK_BYTES = 16 * 1024 * 1024;

export type StreamErrorKind = 'malformed' | 'unsupported' | 'truncated' | 'protocol' | 'too-large';
const KIND_PREFIX: Record<StreamErrorKind, string> = {
  malformed: 'malformed stream ciphertext',
  unsupported: 'unsupported ciphertext format',
  truncated: 'truncated stream ciphertext',
  protocol: 'stream protocol violation',
  'too-large': 'stream chunk too large',
};

/**
 * Why a stream was refused, for the daemon to map: malformed → CIPHERTEXT_MALFORMED, unsupported →
 * CIPHERTEXT_FORMAT_UNSUPPORTED (`formatVersion`), truncated → STREAM_TRUNCATED (`chunksReceived`),
 * protocol → STREAM_PROTOCOL_VIOLATION, too-large (a chunk within the format but over this
 * decryptor's limit: `declaredBytes`, `limitBytes`) → PAYLOAD_TOO_LARGE. `detail` never echoes
 * ciphertext bytes.
 */
export class StreamFormatError extends Error {
  readonly formatVersion: number | undefined;
  readonly chunksReceived: number | undefined;
  /** For too-large: the plaintext bytes the chunk declares, and the most this decryptor takes. */
  readonly declaredBytes: number | undefined;
  readonly limitBytes: number | undefined;
  constructor(readonly kind: StreamErrorKind, readonly detail: string, meta: { formatVersion?: number; chunksReceived?: number; declaredBytes?: number; limitBytes?: number } = {}) {
    super(`${KIND_PREFIX[kind]}: ${detail}`);
    this.name = 'StreamFormatError';
    ({ formatVersion: this.formatVersion, chunksReceived: this.chunksReceived, declaredBytes: this.declaredBytes, limitBytes: this.limitBytes } = meta);
  }
}

export interface StreamHeaderFields { suite: AeadSuiteName; keyId: Buffer; keyVersion: number; streamId: Buffer }

export interface StreamHeader extends StreamHeaderFields {
  suiteId: number;
  /** The exact 40 header bytes, authenticated with every chunk. */
  bytes: Buffer;
}

export function encodeStreamHeader(h: StreamHeaderFields): Buffer {
  const suiteId = SUITE_IDS[h.suite];
  if (suiteId === undefined) throw new RangeError(`unknown AEAD suite ${h.suite}`);
  if (h.keyId.length !== KEY_ID_BYTES) throw new RangeError(`key id must be ${KEY_ID_BYTES} bytes`);
  if (h.streamId.length !== STREAM_ID_BYTES) throw new RangeError(`stream id must be ${STREAM_ID_BYTES} bytes`);
  if (!Number.isInteger(h.keyVersion) || h.keyVersion < 1 || h.keyVersion > 0xffffffff) throw new RangeError('key version out of range');
  const out = Buffer.alloc(STREAM_HEADER_BYTES);
  MAGIC.copy(out, 0);
  out[2] = STREAM_FORMAT_VERSION;
  out[3] = suiteId;
  h.keyId.copy(out, 4);
  out.writeUInt32BE(h.keyVersion, 4 + KEY_ID_BYTES);
  h.streamId.copy(out, 8 + KEY_ID_BYTES);
  return out;
}

/** Parses the first 40 bytes of hostile input strictly; the rest of `buf` is ignored. */
export function decodeStreamHeader(buf: Buffer): StreamHeader {
  if (buf.length < STREAM_HEADER_BYTES) throw new StreamFormatError('malformed', `${buf.length} bytes is shorter than the ${STREAM_HEADER_BYTES}-byte stream header`);
  if (!buf.subarray(0, 2).equals(MAGIC)) throw new StreamFormatError('malformed', 'not a ringfence ciphertext (bad magic)');
  const format = buf[2]!;
  // A unary ciphertext is a known format of the wrong kind, not a newer one (errors.proto).
  if (format === UNARY_FORMAT_VERSION) throw new StreamFormatError('malformed', 'a ciphertext of Encrypt (format 1), not a stream ciphertext: use Decrypt');
  if (format === 0) throw new StreamFormatError('malformed', 'there is no ciphertext format 0');
  if (format !== STREAM_FORMAT_VERSION) throw new StreamFormatError('unsupported', `format version ${format} is unknown to this daemon`, { formatVersion: format });
  const suiteId = buf[3]!;
  const suite = SUITE_BY_ID.get(suiteId);
  if (!suite) throw new StreamFormatError('malformed', `unknown suite id ${suiteId}`);
  const keyVersion = buf.readUInt32BE(4 + KEY_ID_BYTES);
  if (keyVersion === 0) throw new StreamFormatError('malformed', 'key version 0');
  return {
    suite,
    suiteId,
    keyId: Buffer.from(buf.subarray(4, 4 + KEY_ID_BYTES)),
    keyVersion,
    streamId: Buffer.from(buf.subarray(8 + KEY_ID_BYTES, STREAM_HEADER_BYTES)),
    bytes: Buffer.from(buf.subarray(0, STREAM_HEADER_BYTES)),
  };
}

/** Chunk `index`'s associated data: header || index u64 || flags u8 || caller's AAD. */
export function chunkAad(header: Buffer, index: number, flags: number, callerAad: Buffer): Buffer {
  const mid = Buffer.alloc(9);
  mid.writeBigUInt64BE(BigInt(index));
  mid[8] = flags;
  return Buffer.concat([header, mid, callerAad]);
}

function tagBytesOf(suite: AeadSuiteName): number {
  const s = aeadSuite(suite);
  if (s) return s.tagBytes;
  throw new RangeError(`unknown AEAD suite ${suite}`);
}

function checkMaxChunk(n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > 0xffffffff - 64) throw new RangeError('maxChunkBytes out of range');
}

export interface StreamEncryptorOptions {
  /** From encodeStreamHeader; its suite sets the tag size. */
  header: Buffer;
  callerAad: Buffer;
  /** Largest plaintext per chunk (Limits.max_stream_chunk_bytes). */
  maxChunkBytes: number;
  /**
   * Returns `headroom` bytes of scratch, then ciphertext || tag: the chunk prefix is written into
   * the scratch, so a chunk of up to max_stream_chunk_bytes is not copied once more.
   */
  seal: (nonce: Buffer, aad: Buffer, plaintext: Buffer, headroom: number) => Promise<Buffer>;
  /** 12 fresh random bytes per call. */
  nonce: () => Buffer;
}

/** Seals plaintext pieces into chunks, in order. Calls must not overlap (await each). */
export class StreamEncryptor {
  readonly header: StreamHeader;
  readonly tagBytes: number;
  readonly #opts: StreamEncryptorOptions;
  #index = 0;
  #sealCalls = 0;
  #final = false;
  #busy = false;
  #failure: { error: unknown } | undefined;

  constructor(opts: StreamEncryptorOptions) {
    checkMaxChunk(opts.maxChunkBytes);
    this.header = decodeStreamHeader(opts.header);
    this.tagBytes = tagBytesOf(this.header.suite);
    this.#opts = opts;
  }

  headerBytes(): Buffer { return this.header.bytes; }
  get finished(): boolean { return this.#final; }

  /** Seal calls made, each with a fresh nonce (a failed one included: its nonce may be spent). */
  get chunksSealed(): number { return this.#sealCalls; }

  /** The encoded chunk, or undefined for an empty non-final piece (ignored, per the proto). */
  async push(plaintext: Buffer, final: boolean): Promise<Buffer | undefined> {
    if (this.#busy) throw new Error('StreamEncryptor.push called while another call is pending');
    if (this.#failure) throw this.#failure.error;
    if (this.#final) throw new StreamFormatError('protocol', 'a chunk after the final chunk');
    // The daemon checks its limit first (PAYLOAD_TOO_LARGE); reaching this is a bug.
    if (plaintext.length > this.#opts.maxChunkBytes) throw new RangeError(`chunk of ${plaintext.length} bytes exceeds maxChunkBytes ${this.#opts.maxChunkBytes}`);
    if (plaintext.length === 0 && !final) return undefined;
    this.#busy = true;
    try {
      const nonce = this.#opts.nonce();
      if (nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
      const flags = final ? FLAG_FINAL : 0;
      const aad = chunkAad(this.header.bytes, this.#index, flags, this.#opts.callerAad);
      this.#sealCalls++;
      const chunk = await this.#opts.seal(nonce, aad, plaintext, CHUNK_PREFIX_BYTES);
      const sealedBytes = chunk.length - CHUNK_PREFIX_BYTES;
      if (sealedBytes !== plaintext.length + this.tagBytes) throw new Error(`seal returned ${sealedBytes} bytes for ${plaintext.length} bytes of plaintext`);
      this.#index++;
      this.#final = final;
      chunk[0] = flags;
      chunk.writeUInt32BE(sealedBytes, 1);
      nonce.copy(chunk, 5);
      return chunk;
    } catch (e) {
      // Whether the chunk was sealed is unknown: the stream cannot go on consistently.
      this.#failure = { error: e };
      throw e;
    } finally {
      this.#busy = false;
    }
  }

  /** Ends the stream: an empty final chunk if none was sent, else undefined. */
  async finish(): Promise<Buffer | undefined> {
    if (this.#final) return undefined;
    return this.push(Buffer.alloc(0), true);
  }
}

export interface StreamDecryptorOptions {
  callerAad: Buffer;
  /** Largest plaintext per chunk accepted; a chunk declaring more is refused before buffering. */
  maxChunkBytes: number;
  /** Returns the plaintext, or throws (authentication failure) — propagated unchanged. */
  open: (header: StreamHeader, nonce: Buffer, aad: Buffer, sealed: Buffer) => Promise<Buffer>;
  /** Awaited once the header is parsed, before any chunk is opened (e.g. to look up the key). */
  onHeader?: (header: StreamHeader) => Promise<void> | void;
}

export interface DecryptedChunk { index: number; plaintext: Buffer; final: boolean }

export type Unit = 'header' | 'prefix' | 'body' | 'done';

/**
 * Reassembles a stream ciphertext sliced anywhere and opens its chunks in order. Holds at most the
 * unfinished part of one header, chunk prefix or chunk body. Calls must not overlap; after any
 * error every call rethrows it.
 */
export class StreamDecryptor {
  readonly #opts: StreamDecryptorOptions;
  #header: StreamHeader | undefined;
  #tagBytes = 0;
  #unit: Unit = 'header';
  #need = STREAM_HEADER_BYTES;
  #parts: Buffer[] = [];
  #partBytes = 0;
  /** Where small pieces are copied: the last part, filled to #slabUsed. */
  #slab: Buffer | undefined;
  #slabUsed = 0;
  #flags = 0;
  #nonce = Buffer.alloc(0);
  #index = 0;
  #busy = false;
  #failure: { error: unknown } | undefined;
  constructor(opts: StreamDecryptorOptions) {
    checkMaxChunk(opts.maxChunkBytes);
    this.#opts = opts;
  }
  /** The stream header, once parsed (and accepted by onHeader). */
  get header(): StreamHeader | undefined { return this.#header; }
  get chunksOpened(): number { return this.#index; }
  /** Bytes held for the unfinished header, prefix or chunk. */
  get bufferedBytes(): number { return this.#partBytes; }
  /** The Buffers holding them (tests: small pieces share slabs). */
  get heldBuffers(): number { return this.#parts.length + (this.#slab ? 1 : 0); }
  /** What the decryptor reads next, and how many bytes it still needs to finish it. */
  get position(): { unit: Unit; remaining: number } { return { unit: this.#unit, remaining: this.#need - this.#partBytes }; }
  /** The memory they keep alive: the distinct ArrayBuffers under them (what DecryptStream counts against the budget). */
  get heldAllocation(): number {
    const buffers = new Set<ArrayBufferLike>([...this.#parts, ...(this.#slab ? [this.#slab] : [])].map((b) => b.buffer));
    return [...buffers].reduce((n, b) => n + b.byteLength, 0);
  }
  get finished(): boolean { return this.#unit === 'done'; }

  /**
   * Consumes the next bytes; returns the chunks they completed, each after it authenticated.
   * `bytes` may be held (as a view) until its chunk completes: do not change it after the call.
   */
  async push(bytes: Buffer): Promise<DecryptedChunk[]> {
    if (this.#busy) throw new Error('StreamDecryptor.push called while another call is pending');
    if (this.#failure) throw this.#failure.error;
    this.#busy = true;
    try {
      return await this.#consume(bytes);
    } catch (e) {
      this.#failure = { error: e };
      [this.#parts, this.#partBytes, this.#slab] = [[], 0, undefined]; // release what was buffered
      throw e;
    } finally {
      this.#busy = false;
    }
  }

  /** The input ended: throws unless the final chunk arrived. */
  end(): void {
    if (this.#busy) throw new Error('StreamDecryptor.end called while a push is pending');
    if (this.#failure) throw this.#failure.error;
    if (this.#unit === 'done') return;
    const detail =
      this.#unit === 'header' ? (this.#partBytes === 0 ? 'no stream header' : 'the stream ended inside its header')
      : this.#unit === 'prefix' && this.#partBytes === 0 ? `the stream ended after ${this.#index} chunks without its final chunk`
      : `the stream ended inside chunk ${this.#index}`;
    this.#failure = { error: new StreamFormatError('truncated', detail, { chunksReceived: this.#index }) };
    throw this.#failure.error;
  }

  async #consume(bytes: Buffer): Promise<DecryptedChunk[]> {
    const out: DecryptedChunk[] = [];
    let off = 0;
    while (off < bytes.length) {
      if (this.#unit === 'done') throw new StreamFormatError('protocol', `${bytes.length - off} bytes after the final chunk`);
      const take = Math.min(this.#need - this.#partBytes, bytes.length - off);
      let unit: Buffer | undefined;
      if (this.#partBytes === 0 && take === this.#need) {
        unit = bytes.subarray(off, off + take); // whole unit in this input: no copy
      } else {
        // A small piece is copied, so it does not pin the caller's (maybe much larger) buffer; a large
        // one is kept as a view, since Buffer.concat below copies it once anyway.
        const piece = bytes.subarray(off, off + take);
        if (take < PIN_MIN_BYTES) this.#copyToSlab(piece);
        else {
          this.#closeSlab();
          this.#parts.push(piece);
        }
        this.#partBytes += take;
        if (this.#partBytes === this.#need) {
          this.#closeSlab();
          unit = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#need);
          this.#parts = [];
          this.#partBytes = 0;
        }
      }
      off += take;
      if (unit) {
        const chunk = await this.#complete(unit);
        if (chunk) out.push(chunk);
      }
    }
    return out;
  }

  /** Copies a small piece into slabs of at most PIN_MIN_BYTES, never past the unit's end. */
  #copyToSlab(piece: Buffer): void {
    let at = 0;
    while (at < piece.length) {
      if (this.#slab === undefined || this.#slabUsed === this.#slab.length) {
        this.#closeSlab();
        // Pieces held so far, this one's remainder, and what the unit still needs after it.
        const unitLeft = this.#need - this.#partBytes - at;
        this.#slab = Buffer.allocUnsafe(Math.min(PIN_MIN_BYTES, unitLeft));
        this.#slabUsed = 0;
      }
      const n = piece.copy(this.#slab, this.#slabUsed, at);
      this.#slabUsed += n;
      at += n;
    }
  }

  /**
   * The slab being filled becomes a part, its unwritten end cut off. One less than half full is
   * copied out, so small pieces between large ones do not hold a slab each (found by review).
   */
  #closeSlab(): void {
    if (this.#slab === undefined) return;
    const used = this.#slab.subarray(0, this.#slabUsed);
    if (this.#slabUsed > 0) this.#parts.push(this.#slabUsed * 2 < this.#slab.length ? Buffer.from(used) : used);
    this.#slab = undefined;
    this.#slabUsed = 0;
  }

  async #complete(unit: Buffer): Promise<DecryptedChunk | undefined> {
    switch (this.#unit) {
      case 'header': {
        const header = decodeStreamHeader(unit);
        const tagBytes = tagBytesOf(header.suite);
        await this.#opts.onHeader?.(header);
        this.#header = header;
        this.#tagBytes = tagBytes;
        this.#expect('prefix', CHUNK_PREFIX_BYTES);
        return undefined;
      }
      case 'prefix': {
        const flags = unit[0]!;
        if (flags & ~FLAG_FINAL) throw new StreamFormatError('malformed', `chunk ${this.#index} has unknown flags 0x${flags.toString(16)}`);
        const sealedBytes = unit.readUInt32BE(1);
        if (sealedBytes < this.#tagBytes) throw new StreamFormatError('malformed', `chunk ${this.#index} is shorter than the ${this.#tagBytes}-byte tag`);
        // Refused before a byte of it is buffered: the declared length is attacker-controlled.
        const limit = this.#opts.maxChunkBytes + this.#tagBytes;
        const declared = sealedBytes - this.#tagBytes;
        // Longer than any daemon writes: altered, not a limit to raise.
        if (declared > Math.max(MAX_STREAM_CHUNK_BYTES, this.#opts.maxChunkBytes)) {
          throw new StreamFormatError('malformed', `chunk ${this.#index} declares ${declared} bytes of plaintext, more than any ringfence stream chunk holds (${MAX_STREAM_CHUNK_BYTES})`);
        }
        if (sealedBytes > limit) {
          throw new StreamFormatError('too-large', `chunk ${this.#index} declares ${declared} bytes of plaintext; this daemon takes chunks of at most ${this.#opts.maxChunkBytes} (maxStreamChunkBytes). A stream encrypted by a daemon with a larger limit decrypts once it is raised to at least ${declared}`, {
            declaredBytes: declared,
            limitBytes: this.#opts.maxChunkBytes,
          });
        }
        this.#flags = flags;
        this.#nonce = Buffer.from(unit.subarray(5, CHUNK_PREFIX_BYTES));
        this.#expect('body', sealedBytes);
        return undefined;
      }
      case 'body': {
        const header = this.#header!;
        const aad = chunkAad(header.bytes, this.#index, this.#flags, this.#opts.callerAad);
        const plaintext = await this.#opts.open(header, this.#nonce, aad, unit);
        const final = (this.#flags & FLAG_FINAL) !== 0;
        const chunk = { index: this.#index, plaintext, final };
        this.#index++;
        if (final) this.#unit = 'done';
        else this.#expect('prefix', CHUNK_PREFIX_BYTES);
        return chunk;
      }
      default:
        throw new Error('unreachable: no unit after the final chunk');
    }
  }

  #expect(unit: Unit, bytes: number): void {
    this.#unit = unit;
    this.#need = bytes;
  }
}
