/**
 * Scalar values on the protobuf wire, for binary-encode.ts: their sizes, range checks (as
 * protobuf-es' BinaryWriter makes them) and writing into a sized buffer.
 */
import { ScalarType } from '@bufbuild/protobuf';

export const WIRE_VARINT = 0;
const WIRE_BIT64 = 1;
export const WIRE_LEN = 2;
const WIRE_BIT32 = 5;

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const FLOAT32_MAX = 3.4028234663852886e38;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** A buffer sized by the first pass; `lengths` are that pass's lengths, `next` the next to use. */
export interface Writer {
  buf: Buffer;
  pos: number;
  lengths: number[];
  next: number;
}

export function zeroScalar(t: ScalarType): unknown {
  switch (t) {
    case ScalarType.STRING:
      return '';
    case ScalarType.BYTES:
      return new Uint8Array(0);
    case ScalarType.BOOL:
      return false;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return 0n;
    default:
      return 0;
  }
}

export function isZero(t: ScalarType, v: unknown): boolean {
  switch (t) {
    case ScalarType.BOOL:
      return v === false;
    case ScalarType.STRING:
      return v === '';
    case ScalarType.BYTES:
      return v instanceof Uint8Array && v.byteLength === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(v, 0);
    default:
      return v == 0; // 0, 0n and "0"
  }
}

export function tagOf(no: number, wire: number): number {
  return ((no << 3) | wire) >>> 0;
}

export function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

export function wireOf(t: ScalarType): number {
  switch (t) {
    case ScalarType.BYTES:
    case ScalarType.STRING:
      return WIRE_LEN;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WIRE_BIT64;
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
    case ScalarType.FLOAT:
      return WIRE_BIT32;
    default:
      return WIRE_VARINT;
  }
}

/** The value's encoded size (without tag); checks ranges as protobuf-es' writer does. */
export function sizeScalar(t: ScalarType, v: unknown, lengths: number[]): number {
  switch (t) {
    case ScalarType.STRING: {
      // toBinary would write String(v) (TextEncoder's reading); a non-string here is a bug to surface.
      if (typeof v !== 'string') throw new Error(`invalid string: ${typeof v}`);
      const len = Buffer.byteLength(v, 'utf8');
      lengths.push(len);
      return varintSize(len) + len;
    }
    case ScalarType.BYTES:
      if (!(v instanceof Uint8Array)) throw new Error(`invalid bytes: ${typeof v}`);
      return varintSize(v.byteLength) + v.byteLength;
    case ScalarType.BOOL:
      return 1;
    case ScalarType.UINT32:
      return varintSize(uint32(v));
    case ScalarType.INT32: {
      const i = int32(v);
      return i < 0 ? 10 : varintSize(i);
    }
    case ScalarType.SINT32:
      return varintSize(zigzag32(int32(v)));
    case ScalarType.INT64:
      return varint64Size(BigInt.asUintN(64, int64(v)));
    case ScalarType.UINT64:
      return varint64Size(uint64(v));
    case ScalarType.SINT64:
      return varint64Size(zigzag64(int64(v)));
    case ScalarType.FIXED32:
      uint32(v);
      return 4;
    case ScalarType.SFIXED32:
      int32(v);
      return 4;
    case ScalarType.FLOAT:
      float32(v);
      return 4;
    case ScalarType.FIXED64:
      uint64(v);
      return 8;
    case ScalarType.SFIXED64:
      int64(v);
      return 8;
    case ScalarType.DOUBLE:
      // DataView.setFloat64 (toBinary's) refuses a bigint; Number() would convert it.
      if (typeof v === 'bigint') throw new TypeError('Cannot convert a BigInt value to a number');
      return 8;
  }
}

function num(v: unknown, what: string): number {
  if (typeof v === 'string') return Number(v);
  if (typeof v !== 'number') throw new Error(`invalid ${what}: ${typeof v}`);
  return v;
}

function uint32(v: unknown): number {
  const n = num(v, 'uint32');
  if (!Number.isInteger(n) || n < 0 || n > UINT32_MAX) throw new Error(`invalid uint32: ${n}`);
  return n;
}

function int32(v: unknown): number {
  const n = num(v, 'int32');
  if (!Number.isInteger(n) || n < INT32_MIN || n > INT32_MAX) throw new Error(`invalid int32: ${n}`);
  return n;
}

function float32(v: unknown): number {
  if (typeof v === 'string' && Number.isNaN(Number(v)) && v !== 'NaN') throw new Error(`invalid float32: ${v}`);
  const n = num(v, 'float32');
  if (Number.isFinite(n) && (n > FLOAT32_MAX || n < -FLOAT32_MAX)) throw new Error(`invalid float32: ${n}`);
  return n;
}

function int64(v: unknown): bigint {
  const b = typeof v === 'bigint' ? v : BigInt(v as string | number);
  if (b < INT64_MIN || b > INT64_MAX) throw new Error(`invalid int64: ${String(v)}`);
  return b;
}

function uint64(v: unknown): bigint {
  const b = typeof v === 'bigint' ? v : BigInt(v as string | number);
  if (b < 0n || b > UINT64_MAX) throw new Error(`invalid uint64: ${String(v)}`);
  return b;
}

function zigzag32(i: number): number {
  return ((i << 1) ^ (i >> 31)) >>> 0;
}

function zigzag64(b: bigint): bigint {
  return BigInt.asUintN(64, (b << 1n) ^ (b >> 63n));
}

function varint64Size(u: bigint): number {
  if (u <= 0xffffffffn) return varintSize(Number(u));
  let n = 1;
  while (u > 0x7fn) {
    u >>= 7n;
    n++;
  }
  return n;
}

export function putVarint(w: Writer, v: number): void {
  const b = w.buf;
  while (v > 0x7f) {
    b[w.pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[w.pos++] = v;
}

function putVarint64(w: Writer, u: bigint): void {
  if (u <= 0xffffffffn) return putVarint(w, Number(u));
  while (u > 0x7fn) {
    w.buf[w.pos++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  w.buf[w.pos++] = Number(u);
}

/** Writes a value sizeScalar has checked. */
export function writeScalar(w: Writer, t: ScalarType, v: unknown): void {
  const b = w.buf;
  switch (t) {
    case ScalarType.STRING: {
      const len = w.lengths[w.next++]!;
      putVarint(w, len);
      // A short write would leave bytes of the pool behind: the final length check catches it.
      w.pos += b.write(v as string, w.pos, len, 'utf8');
      return;
    }
    case ScalarType.BYTES: {
      const u8 = v as Uint8Array;
      putVarint(w, u8.byteLength);
      b.set(u8, w.pos);
      w.pos += u8.byteLength;
      return;
    }
    case ScalarType.BOOL:
      b[w.pos++] = v ? 1 : 0;
      return;
    case ScalarType.UINT32:
      return putVarint(w, Number(v));
    case ScalarType.INT32: {
      const i = Number(v);
      return i < 0 ? putVarint64(w, BigInt.asUintN(64, BigInt(i))) : putVarint(w, i);
    }
    case ScalarType.SINT32:
      return putVarint(w, zigzag32(Number(v)));
    case ScalarType.INT64:
      return putVarint64(w, BigInt.asUintN(64, int64(v)));
    case ScalarType.UINT64:
      return putVarint64(w, uint64(v));
    case ScalarType.SINT64:
      return putVarint64(w, zigzag64(int64(v)));
    case ScalarType.FIXED32:
      w.pos = b.writeUInt32LE(Number(v), w.pos);
      return;
    case ScalarType.SFIXED32:
      w.pos = b.writeInt32LE(Number(v), w.pos);
      return;
    case ScalarType.FLOAT:
      w.pos = b.writeFloatLE(Number(v), w.pos);
      return;
    case ScalarType.DOUBLE:
      w.pos = b.writeDoubleLE(Number(v), w.pos);
      return;
    case ScalarType.FIXED64:
      w.pos = b.writeBigUInt64LE(uint64(v), w.pos);
      return;
    case ScalarType.SFIXED64:
      w.pos = b.writeBigInt64LE(int64(v), w.pos);
      return;
  }
}
