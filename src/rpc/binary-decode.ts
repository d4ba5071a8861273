/**
 * Protobuf binary decoding in one pass that also checks the wire shape: the message protobuf-es'
 * fromBinary gives (unknown fields dropped) for bytes that pass wire-shape.ts, and undefined for
 * every input that wire-shape.ts refuses or fromBinary throws on. binary-decode.test.ts compares
 * the two over random and mutated messages of every API schema. One difference: a string's leading
 * U+FEFF is kept, as the wire format has it (protobuf-es drops it as a byte order mark).
 *
 * Why: the daemon walked each request twice (wire-shape.ts, then fromBinary through protobuf-es'
 * reflection layer: a wrapper object per message, a Map lookup per field); that was the largest
 * single cost of a Session operation outside the kernel (about 12 % of the daemon's CPU under the
 * test bed's emulation). Here a schema is compiled once into per-field plans and messages are
 * plain objects built as protobuf-es' create() builds them.
 *
 * Only proto3 messages are decoded here (every scalar, enums, messages, lists, maps with string
 * keys), not the types protobuf-es presents specially (wrappers, Struct); anything else is handed to
 * wire-shape.ts + fromBinary whole (`decodeMessage` does that itself).
 */
import { TextDecoder } from 'node:util';
import { fromBinary, protoInt64, ScalarType, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { wireShapeMatches } from './wire-shape.js';
import { wireOf } from './wire-scalar.js';

const VARINT = 0;
const BIT64 = 1;
const LEN = 2;
const BIT32 = 5;
/** protobuf-es' default recursion limit (wire-shape.ts MAX_DEPTH). */
const MAX_DEPTH = 100;
const EDITION_PROTO3 = 999;
const IMPLICIT = 2;

/** Types protobuf-es presents as something other than their message (binary-encode.ts has the same list). */
const SPECIAL_MESSAGES = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue', 'Struct', 'Value', 'ListValue'].map((n) => `google.protobuf.${n}`),
);

const enum Kind {
  Scalar,
  Message,
  ScalarList,
  MessageList,
  Map,
}

interface FieldPlan {
  kind: Kind;
  /** The property the value goes to: the field's, or its oneof's ({ case, value }). */
  local: string;
  oneofCase: string | undefined;
  /** The wire type the field is read with (a list's items'; a map's entries are LEN). */
  wire: number;
  /** Scalars, scalar lists (enums read as int32), map values. */
  scalar: ScalarType;
  utf8: boolean;
  nested: Plan | undefined;
  mapKey: ScalarType;
  /** A map's zero value for a missing entry value. */
  mapZero: () => unknown;
}

interface Plan {
  typeName: string;
  byIndex: (FieldPlan | undefined)[];
  byNumber: Map<number, FieldPlan> | undefined;
  zero: () => Record<string, unknown>;
}

/** A fresh zero value of a scalar, as protobuf-es' scalarZeroValue (bytes are a new array each time). */
function zeroOf(t: ScalarType): () => unknown {
  switch (t) {
    case ScalarType.STRING:
      return () => '';
    case ScalarType.BYTES:
      return () => new Uint8Array(0);
    case ScalarType.BOOL:
      return () => false;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return () => protoInt64.zero;
    default:
      return () => 0;
  }
}

function fieldSupported(f: DescField): boolean {
  if (f.presence === 3 || ('delimitedEncoding' in f && f.delimitedEncoding) || ('longAsString' in f && f.longAsString)) return false;
  if (f.fieldKind === 'scalar' || f.fieldKind === 'enum') return f.getDefaultValue() === undefined;
  if (f.fieldKind === 'map') return f.mapKey === ScalarType.STRING && (f.mapKind !== 'message' || !SPECIAL_MESSAGES.has(f.message.typeName));
  if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) return !SPECIAL_MESSAGES.has(f.message.typeName);
  return true;
}

const plans = new WeakMap<DescMessage, Plan | null>();

/** The plan of a schema, or null when it (or a message it reaches) is not decoded here. */
function planOf(desc: DescMessage): Plan | null {
  const known = plans.get(desc);
  if (known !== undefined) return known;
  // Every reachable schema must be supported; the plans are made only once that is known.
  const reach: DescMessage[] = [];
  const stack = [desc];
  while (stack.length) {
    const m = stack.pop()!;
    if (reach.includes(m)) continue;
    if (m.file.edition !== EDITION_PROTO3 || SPECIAL_MESSAGES.has(m.typeName) || !m.fields.every(fieldSupported)) {
      plans.set(desc, null);
      return null;
    }
    reach.push(m);
    for (const f of m.fields) if (f.message) stack.push(f.message);
  }
  const made = new Map<DescMessage, Plan>();
  for (const m of reach) made.set(m, { typeName: m.typeName, byIndex: [], byNumber: undefined, zero: zeroMessage(m) });
  for (const m of reach) {
    const plan = made.get(m)!;
    const small = m.fields.every((f) => f.number < 256);
    if (!small) plan.byNumber = new Map();
    for (const f of m.fields) {
      const fp = fieldPlan(f, made);
      if (small) plan.byIndex[f.number] = fp;
      else plan.byNumber!.set(f.number, fp);
    }
    plans.set(m, plan);
  }
  return made.get(desc)!;
}

function fieldPlan(f: DescField, made: Map<DescMessage, Plan>): FieldPlan {
  const base = { local: f.oneof ? f.oneof.localName : f.localName, oneofCase: f.oneof ? f.localName : undefined, utf8: f.utf8Validation, nested: undefined, scalar: ScalarType.INT32, mapKey: ScalarType.STRING, mapZero: () => undefined };
  switch (f.fieldKind) {
    case 'scalar':
      return { ...base, kind: Kind.Scalar, wire: wireOf(f.scalar), scalar: f.scalar };
    case 'enum':
      return { ...base, kind: Kind.Scalar, wire: VARINT };
    case 'message':
      return { ...base, kind: Kind.Message, wire: LEN, nested: made.get(f.message)! };
    case 'list':
      if (f.listKind === 'message') return { ...base, kind: Kind.MessageList, wire: LEN, nested: made.get(f.message)! };
      return { ...base, kind: Kind.ScalarList, wire: f.listKind === 'enum' ? VARINT : wireOf(f.scalar), scalar: f.listKind === 'enum' ? ScalarType.INT32 : f.scalar };
    case 'map': {
      if (f.mapKind === 'message') {
        const nested = made.get(f.message)!;
        return { ...base, kind: Kind.Map, wire: LEN, nested, mapZero: () => nested.zero() };
      }
      const value = f.mapKind === 'enum' ? ScalarType.INT32 : f.scalar;
      const enumZero = f.mapKind === 'enum' ? f.enum.values[0]!.number : undefined;
      return { ...base, kind: Kind.Map, wire: LEN, scalar: value, mapKey: f.mapKey, mapZero: enumZero === undefined ? zeroOf(value) : () => enumZero };
    }
  }
}

/**
 * A zero message as protobuf-es' create() makes one for a proto3 schema: implicit fields and oneofs
 * set, in declaration order. Immutable zeros come from a template (an empty bytes value is shared:
 * it has no content to change); lists, maps and oneofs are made fresh.
 */
function zeroMessage(m: DescMessage): () => Record<string, unknown> {
  const template: Record<string, unknown> = { $typeName: m.typeName };
  const lists: string[] = [];
  const maps: string[] = [];
  const oneofs: string[] = [];
  for (const member of m.members) {
    if (member.kind === 'oneof') {
      oneofs.push(member.localName);
      template[member.localName] = undefined;
    } else if (member.presence === IMPLICIT && member.fieldKind !== 'message') {
      if (member.fieldKind === 'list') lists.push(member.localName);
      else if (member.fieldKind === 'map') maps.push(member.localName);
      template[member.localName] = member.fieldKind === 'enum' ? member.enum.values[0]!.number : member.fieldKind === 'scalar' ? zeroOf(member.scalar)() : undefined;
    }
  }
  return () => {
    const msg = { ...template };
    for (let i = 0; i < lists.length; i++) msg[lists[i]!] = [];
    for (let i = 0; i < maps.length; i++) msg[maps[i]!] = {};
    for (let i = 0; i < oneofs.length; i++) msg[oneofs[i]!] = { case: undefined };
    return msg;
  };
}

/** Thrown inside the decoder only; decodeMessage turns it into undefined. */
const MALFORMED = new Error('malformed');

class Reader {
  at = 0;
  private view: DataView | undefined;
  constructor(readonly bytes: Uint8Array) {}

  /** A varint ending before `end` in at most 10 bytes (wire-shape.ts); exact below 2^53. */
  varint(end: number): number {
    const b = this.bytes;
    let at = this.at;
    if (at + 1 < end) {
      // One and two bytes: tags, lengths up to 16 KiB, most numbers.
      const b0 = b[at]!;
      if (b0 < 0x80) {
        this.at = at + 1;
        return b0;
      }
      const b1 = b[at + 1]!;
      if (b1 < 0x80) {
        this.at = at + 2;
        return (b0 & 0x7f) + b1 * 128;
      }
    }
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (at >= end) throw MALFORMED;
      const byte = b[at++]!;
      if (i < 8) value += (byte & 0x7f) * scale;
      else if (byte & 0x7f) value = Number.MAX_SAFE_INTEGER; // only ever compared against lengths
      scale *= 128;
      if ((byte & 0x80) === 0) {
        this.at = at;
        return value;
      }
    }
    throw MALFORMED;
  }

  /** protobuf-es' varint32read: the low 32 bits, unsigned. */
  uint32(end: number): number {
    const start = this.at;
    this.varint(end); // bounds and length
    const b = this.bytes;
    let result = 0;
    // Bits past the 32nd fall off in `<<`, as in protobuf-es.
    for (let i = 0; i < 5 && start + i < this.at; i++) result |= (b[start + i]! & 0x7f) << (7 * i);
    return result >>> 0;
  }

  /** protobuf-es' varint64read: [low, high] 32-bit halves. */
  varint64(end: number): [number, number] {
    const start = this.at;
    this.varint(end);
    const b = this.bytes;
    let lo = 0;
    let hi = 0;
    for (let i = 0; start + i < this.at; i++) {
      const v = b[start + i]! & 0x7f;
      if (i < 4) lo |= v << (7 * i);
      else if (i === 4) {
        lo |= (v & 0x0f) << 28;
        hi = (v & 0x70) >> 4;
      } else hi |= v << (7 * i - 32);
    }
    return [lo, hi];
  }

  fixed(end: number, size: 4 | 8): DataView {
    if (this.at + size > end) throw MALFORMED;
    this.view ??= new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.at += size;
    return this.view;
  }

  /** A length-delimited field's end. */
  delimited(end: number): number {
    const length = this.varint(end);
    if (length > end - this.at) throw MALFORMED;
    return this.at + length;
  }

  scalar(t: ScalarType, utf8: boolean, end: number): unknown {
    switch (t) {
      case ScalarType.STRING: {
        const stop = this.delimited(end);
        return decodeString(this.bytes, this.at, (this.at = stop), utf8);
      }
      case ScalarType.BYTES: {
        const stop = this.delimited(end);
        return this.bytes.subarray(this.at, (this.at = stop));
      }
      case ScalarType.BOOL: {
        const [lo, hi] = this.varint64(end);
        return lo !== 0 || hi !== 0;
      }
      case ScalarType.INT32:
        return this.uint32(end) | 0;
      case ScalarType.UINT32:
        return this.uint32(end);
      case ScalarType.SINT32: {
        const z = this.uint32(end);
        return (z >>> 1) ^ -(z & 1);
      }
      case ScalarType.INT64:
        return protoInt64.dec(...this.varint64(end));
      case ScalarType.UINT64:
        return protoInt64.uDec(...this.varint64(end));
      case ScalarType.SINT64: {
        let [lo, hi] = this.varint64(end);
        const s = -(lo & 1);
        lo = ((lo >>> 1) | ((hi & 1) << 31)) ^ s;
        hi = (hi >>> 1) ^ s;
        return protoInt64.dec(lo, hi);
      }
      case ScalarType.FIXED32:
        return this.fixed(end, 4).getUint32(this.at - 4, true);
      case ScalarType.SFIXED32:
        return this.fixed(end, 4).getInt32(this.at - 4, true);
      case ScalarType.FLOAT:
        return this.fixed(end, 4).getFloat32(this.at - 4, true);
      case ScalarType.DOUBLE:
        return this.fixed(end, 8).getFloat64(this.at - 8, true);
      case ScalarType.FIXED64: {
        const v = this.fixed(end, 8);
        return protoInt64.uDec(v.getInt32(this.at - 8, true), v.getInt32(this.at - 4, true));
      }
      case ScalarType.SFIXED64: {
        const v = this.fixed(end, 8);
        return protoInt64.dec(v.getInt32(this.at - 8, true), v.getInt32(this.at - 4, true));
      }
    }
  }

  /** A tag as protobuf-es' reader().tag() accepts it: at most 5 bytes, 32 bits, field number > 0, wire type <= 5. */
  tag(end: number): number {
    const start = this.at;
    const tag = this.varint(end);
    if (this.at - start > 5 || tag > 0xffff_ffff || tag < 8) throw MALFORMED;
    return tag;
  }

  /** Skips an unknown field (groups and wire types 6, 7 are refused, as wire-shape.ts does). */
  skip(wire: number, end: number): void {
    if (wire === VARINT) this.varint(end);
    else if (wire === BIT64 || wire === BIT32) this.fixed(end, wire === BIT64 ? 8 : 4);
    else if (wire === LEN) this.at = this.delimited(end);
    else throw MALFORMED;
  }
}

/**
 * UTF-8 decoders that keep a leading U+FEFF. protobuf-es' (TextDecoder's defaults) drop it as a byte
 * order mark, but on the wire it is the string's first character: a key name "\ufeffk1" was read as
 * "k1" and another key was used, where a name the daemon does not allow is refused (found by review).
 */
let strictUtf8: TextDecoder | undefined;
let lenientUtf8: TextDecoder | undefined;

/** protobuf-es' string decoding (strict: invalid UTF-8 throws) but for a leading U+FEFF, with short ASCII strings decoded inline. */
function decodeString(b: Uint8Array, from: number, to: number, strict: boolean): string {
  if (to - from <= 64) {
    let s = '';
    let i = from;
    for (; i < to && b[i]! < 0x80; i++) s += String.fromCharCode(b[i]!);
    if (i === to) return s;
  }
  const decoder = strict ? (strictUtf8 ??= new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })) : (lenientUtf8 ??= new TextDecoder('utf-8', { ignoreBOM: true }));
  try {
    return decoder.decode(b.subarray(from, to));
  } catch {
    throw MALFORMED;
  }
}

function readMessage(plan: Plan, msg: Record<string, unknown>, r: Reader, end: number, depth: number): void {
  while (r.at < end) {
    const tag = r.tag(end);
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    const f = plan.byNumber ? plan.byNumber.get(no) : no < plan.byIndex.length ? plan.byIndex[no] : undefined;
    if (!f) {
      r.skip(wire, end);
      continue;
    }
    if (wire !== f.wire) {
      // Only a list of numbers may also come packed.
      if (!(f.kind === Kind.ScalarList && wire === LEN)) throw MALFORMED;
      readPacked(f, msg[f.local] as unknown[], r, r.delimited(end));
      continue;
    }
    switch (f.kind) {
      case Kind.Scalar: {
        const v = r.scalar(f.scalar, f.utf8, end);
        msg[f.local] = f.oneofCase ? { case: f.oneofCase, value: v } : v;
        break;
      }
      case Kind.Message: {
        if (depth + 1 >= MAX_DEPTH) throw MALFORMED;
        const stop = r.delimited(end);
        // A message field seen again is merged into the one read before (a oneof's only if it is the same case).
        const held = msg[f.local] as { case?: string; value?: unknown } | undefined;
        const before = f.oneofCase ? (held!.case === f.oneofCase ? held!.value : undefined) : held;
        const nested = (before as Record<string, unknown> | undefined) ?? f.nested!.zero();
        readMessage(f.nested!, nested, r, stop, depth + 1);
        msg[f.local] = f.oneofCase ? { case: f.oneofCase, value: nested } : nested;
        break;
      }
      case Kind.MessageList: {
        if (depth + 1 >= MAX_DEPTH) throw MALFORMED;
        const stop = r.delimited(end);
        const nested = f.nested!.zero();
        readMessage(f.nested!, nested, r, stop, depth + 1);
        (msg[f.local] as unknown[]).push(nested);
        break;
      }
      case Kind.ScalarList:
        (msg[f.local] as unknown[]).push(r.scalar(f.scalar, f.utf8, end));
        break;
      case Kind.Map:
        if (depth + 1 >= MAX_DEPTH) throw MALFORMED;
        readMapEntry(f, msg[f.local] as Record<string, unknown>, r, r.delimited(end), depth);
        break;
    }
  }
}

/** A packed list: its items must fill it exactly (wire-shape.ts packedFits): each is read bounded by its end. */
function readPacked(f: FieldPlan, list: unknown[], r: Reader, end: number): void {
  if (f.wire === LEN) throw MALFORMED; // strings and bytes are never packed
  // A fixed-size item cut by the list's end fails in r.fixed.
  while (r.at < end) list.push(r.scalar(f.scalar, f.utf8, end));
}

/** A map entry: fields 1 (key) and 2 (value) only, each optional (protobuf-es' readMapEntry). */
function readMapEntry(f: FieldPlan, map: Record<string, unknown>, r: Reader, end: number, depth: number): void {
  let key: unknown;
  let value: unknown;
  while (r.at < end) {
    const tag = r.tag(end);
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    if (no === 1 && wire === wireOf(f.mapKey)) key = r.scalar(f.mapKey, f.utf8, end);
    else if (no === 2 && f.nested && wire === LEN) {
      // A message value is read fresh each time (protobuf-es does not merge them), one level below the entry.
      if (depth + 2 >= MAX_DEPTH) throw MALFORMED;
      const stop = r.delimited(end);
      value = f.nested.zero();
      readMessage(f.nested, value as Record<string, unknown>, r, stop, depth + 2);
    } else if (no === 2 && !f.nested && wire === wireOf(f.scalar)) value = r.scalar(f.scalar, f.utf8, end);
    else throw MALFORMED;
  }
  map[(key ?? '') as string] = value === undefined ? f.mapZero() : value;
}

/**
 * The decoded message, or undefined when the bytes are not a well-formed `desc` (see above).
 * Unknown fields are skipped, not kept.
 */
export function decodeMessage<D extends DescMessage>(desc: D, bytes: Uint8Array): MessageShape<D> | undefined {
  const plan = planOf(desc);
  if (!plan) {
    if (!wireShapeMatches(desc, bytes)) return undefined;
    try {
      return fromBinary(desc, bytes, { readUnknownFields: false });
    } catch {
      return undefined;
    }
  }
  const msg = plan.zero();
  try {
    readMessage(plan, msg, new Reader(bytes), bytes.length, 0);
  } catch (e) {
    if (e === MALFORMED) return undefined;
    throw e;
  }
  return msg as MessageShape<D>;
}

/** Whether decodeMessage decodes `desc` itself (for tests). */
export function decodesItself(desc: DescMessage): boolean {
  return planOf(desc) !== null;
}
