/**
 * Whether an encoded message has the wire shape its schema gives, checked before protobuf-es
 * decodes it. protobuf-es reads a known field by the schema and ignores the tag's wire type (a
 * varint field tagged length-delimited is read as a varint, a repeated message field tagged as a
 * group as a length and a message), and a nested message may run past its declared length. The
 * daemon counts a request's items on the wire before decoding (api/decode.ts), so any place where
 * the decoder reads the bytes differently from the wire format let a client hide millions of items
 * from that count (found by review: 4 MiB decoded into 2 million batch items, 900 MiB of heap).
 *
 * Checked here, in one pass over the tags (bytes fields are skipped by length): every known field
 * has a wire type the decoder reads it with; every length, packed list and nested message ends
 * within its parent; varints end within 10 bytes; no groups (proto3 has none; unknown groups are
 * refused too); nesting at most protobuf-es' recursion limit. Unknown fields of the other wire
 * types pass (a newer client's fields), and the decoder skips them as the wire format says.
 */
import { ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';

/** protobuf-es' default recursion limit: deeper messages do not decode anyway. */
const MAX_DEPTH = 100;

const Wire = { Varint: 0, Bit64: 1, Delimited: 2, Bit32: 5 } as const;
type Wire = (typeof Wire)[keyof typeof Wire];

function scalarWire(t: ScalarType): Wire {
  switch (t) {
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return Wire.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return Wire.Bit32;
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return Wire.Delimited;
    default:
      return Wire.Varint;
  }
}

/** How the decoder reads one field number of a message (or of a map entry). */
interface FieldShape {
  wire: Wire;
  /** Read as a nested message with this shape. */
  nested?: Shape;
  /** Also accepted length-delimited, as a packed list of this wire type. */
  packed?: Wire;
}
type Shape = (fieldNo: number) => FieldShape | undefined | 'refused';

const shapes = new WeakMap<DescMessage, Shape>();

function messageShape(desc: DescMessage): Shape {
  let shape = shapes.get(desc);
  if (shape) return shape;
  // Field numbers index an array when they are small (every message of the API), a Map otherwise.
  const small = desc.fields.every((f) => f.number < 256);
  const byNumber = new Map<number, FieldShape>();
  const byIndex: (FieldShape | undefined)[] = [];
  shape = small ? (no) => (no < byIndex.length ? byIndex[no] : undefined) : (no) => byNumber.get(no);
  shapes.set(desc, shape); // before the fields: a message may contain itself
  for (const f of desc.fields) {
    const fs = fieldShape(f);
    if (small) byIndex[f.number] = fs;
    else byNumber.set(f.number, fs);
  }
  return shape;
}

function fieldShape(f: DescField): FieldShape {
  switch (f.fieldKind) {
    case 'scalar':
      return { wire: scalarWire(f.scalar) };
    case 'enum':
      return { wire: Wire.Varint };
    case 'message':
      return { wire: Wire.Delimited, nested: messageShape(f.message) };
    case 'list': {
      if (f.listKind === 'message') return { wire: Wire.Delimited, nested: messageShape(f.message) };
      const wire = f.listKind === 'enum' ? Wire.Varint : scalarWire(f.scalar);
      return wire === Wire.Delimited ? { wire } : { wire, packed: wire };
    }
    case 'map': {
      // protobuf-es reads an entry's fields 1 and 2 by the schema and nothing else (another field
      // number would be misread): the entry is a message of exactly these two.
      const key: FieldShape = { wire: scalarWire(f.mapKey) };
      const value: FieldShape = f.mapKind === 'message' ? { wire: Wire.Delimited, nested: messageShape(f.message) } : { wire: f.mapKind === 'enum' ? Wire.Varint : scalarWire(f.scalar) };
      return { wire: Wire.Delimited, nested: (no) => (no === 1 ? key : no === 2 ? value : 'refused') };
    }
  }
}

/** Reads varints of one message; `at` is where the next read starts. */
class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  /** A varint ending before `end` in at most 10 bytes, else -1. Exact below 2^53. */
  varint(end: number): number {
    const b = this.bytes;
    if (this.at < end && b[this.at]! < 0x80) return b[this.at++]!; // most tags and lengths
    let value = 0;
    for (let i = 0; i < 10; i++) {
      if (this.at >= end) return -1;
      const byte = b[this.at++]!;
      if (i < 8) value += (byte & 0x7f) * 2 ** (7 * i);
      else if (byte & 0x7f) value = Number.MAX_SAFE_INTEGER; // only ever compared against lengths
      if ((byte & 0x80) === 0) return value;
    }
    return -1;
  }

  /** A packed list whose last element ends exactly at `end` (the decoder reads on while short of it). */
  packedFits(wire: Wire, end: number): boolean {
    if (wire === Wire.Varint) {
      while (this.at < end) if (this.varint(end) < 0) return false;
      return true;
    }
    if ((end - this.at) % (wire === Wire.Bit64 ? 8 : 4) !== 0) return false;
    this.at = end;
    return true;
  }
}

/** True when `bytes` has the wire shape of `desc` at every depth (see above). */
export function wireShapeMatches(desc: DescMessage, bytes: Uint8Array): boolean {
  const r = new Reader(bytes);
  // The messages being read, outermost first: their shapes and where each ends.
  const shapes: Shape[] = [messageShape(desc)];
  const ends: number[] = [bytes.length];
  let depth = 0;
  for (;;) {
    const end = ends[depth]!;
    if (r.at === end) {
      if (depth === 0) return true;
      depth--;
      continue;
    }
    const tag = r.varint(end);
    // The decoder reads tags as 32-bit: a larger one would be read as another field.
    if (tag < 0 || tag > 0xffff_ffff) return false;
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    if (no === 0) return false;
    const field = shapes[depth]!(no);
    if (field === 'refused') return false;
    if (field && wire !== field.wire && !(field.packed !== undefined && wire === Wire.Delimited)) return false;
    switch (wire) {
      case Wire.Varint:
        if (r.varint(end) < 0) return false;
        break;
      case Wire.Bit64:
      case Wire.Bit32:
        r.at += wire === Wire.Bit64 ? 8 : 4;
        if (r.at > end) return false;
        break;
      case Wire.Delimited: {
        const length = r.varint(end);
        if (length < 0 || length > end - r.at) return false;
        const inner = r.at + length;
        if (field?.nested) {
          if (depth + 1 >= MAX_DEPTH) return false;
          depth++;
          shapes[depth] = field.nested;
          ends[depth] = inner;
        } else if (field?.packed !== undefined && field.wire !== Wire.Delimited) {
          if (!r.packedFits(field.packed, inner)) return false;
        } else {
          r.at = inner;
        }
        break;
      }
      default:
        return false; // groups (3, 4) and the invalid wire types 6, 7
    }
  }
}
