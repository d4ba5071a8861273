/**
 * Protobuf binary encoding in two passes: sizes first, then one buffer written in place. It gives
 * the bytes protobuf-es' toBinary gives (binary-encode.test.ts compares them for every message of
 * the API), for a fraction of the CPU: toBinary's writer copies every nested message into a fresh
 * zero-filled array when it closes it, so a packed Session message of 51 encrypts was allocated and
 * copied three times over (about 12 us per operation natively, 0.6-1.2 ms under the test bed's
 * emulation, on each side of the socket).
 *
 * Only what proto3 messages hold is written here; a schema that reaches anything else (groups,
 * proto2 required fields, maps with non-string keys, the unwrapped well-known types) is handed to
 * toBinary whole.
 */
import { create, ScalarType, toBinary, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { isZero, putVarint, sizeScalar, tagOf, varintSize, WIRE_LEN, WIRE_VARINT, wireOf, writeScalar, zeroScalar, type Writer } from './wire-scalar.js';

// google.protobuf.FeatureSet.FieldPresence
const IMPLICIT = 2;
const LEGACY_REQUIRED = 3;

/** Types protobuf-es presents as something other than their message (a wrapper's value, a JSON object). */
const SPECIAL_MESSAGES = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue', 'Struct', 'Value', 'ListValue'].map((n) => `google.protobuf.${n}`),
);

/** Fields in field-number order, as toBinary writes them. */
const sortedFields = new WeakMap<DescMessage, readonly DescField[]>();
const supported = new WeakMap<DescMessage, boolean>();

function fieldsOf(schema: DescMessage): readonly DescField[] {
  let f = sortedFields.get(schema);
  if (!f) sortedFields.set(schema, (f = [...schema.fields].sort((a, b) => a.number - b.number)));
  return f;
}

function fieldSupported(f: DescField): boolean {
  if (f.presence === LEGACY_REQUIRED) return false;
  if ((f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) && f.delimitedEncoding) return false;
  if (f.fieldKind === 'map') return f.mapKey === ScalarType.STRING && (f.mapKind !== 'message' || !SPECIAL_MESSAGES.has(f.message.typeName));
  if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) return !SPECIAL_MESSAGES.has(f.message.typeName);
  return true;
}

/** Whether every message reachable from `root` can be encoded here. */
export function isSupported(root: DescMessage): boolean {
  const known = supported.get(root);
  if (known !== undefined) return known;
  const seen = new Set<DescMessage>();
  const stack = [root];
  let ok = true;
  while (ok && stack.length) {
    const m = stack.pop()!;
    if (seen.has(m)) continue;
    seen.add(m);
    for (const f of m.fields) {
      if (!fieldSupported(f)) ok = false;
      else if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message') || (f.fieldKind === 'map' && f.mapKind === 'message')) stack.push(f.message);
    }
  }
  supported.set(root, ok);
  return ok;
}

/**
 * `toBinary(schema, message)`, the same bytes, as a Buffer. A result under 4 KiB is a view into
 * Node's shared allocation pool (Buffer.allocUnsafe): its `.buffer` holds other data around it, so
 * use the Buffer itself, never its ArrayBuffer (grpc-js copies it into its frame).
 */
export function encodeMessage<D extends DescMessage>(schema: D, message: MessageShape<D>): Buffer {
  if (!isSupported(schema)) {
    const u8 = toBinary(schema, message);
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  }
  // Pass 1 records, in the order pass 2 meets them, the length of every nested message, packed
  // list and string.
  const lengths: number[] = [];
  // toBinary encodes a missing message as an empty one.
  const msg = (message ?? create(schema)) as Msg;
  const total = sizeFields(schema, msg, lengths);
  const w: Writer = { buf: Buffer.allocUnsafe(total), pos: 0, lengths, next: 0 };
  writeFields(schema, msg, w);
  if (w.pos !== total) throw new Error(`internal: encoded ${w.pos} bytes of ${total} for ${schema.typeName}`);
  return w.buf;
}

/** `toBinary(schema, message).length`, without encoding (the first pass alone). */
export function encodedSize<D extends DescMessage>(schema: D, message: MessageShape<D>): number {
  return isSupported(schema) ? sizeFields(schema, (message ?? create(schema)) as Msg, []) : toBinary(schema, message).length;
}

type Msg = Record<string, unknown> & { $unknown?: { no: number; wireType: number; data: Uint8Array }[] };

/**
 * The value to write, or undefined when toBinary would skip the field (unsafeIsSet). A field that
 * is set but holds undefined or null is written as its zero value, as toBinary's reflection reads it.
 */
function valueOf(msg: Msg, f: DescField): unknown {
  if (f.oneof) {
    const o = msg[f.oneof.localName] as { case?: string; value?: unknown };
    if (o.case !== f.localName) return undefined;
    return o.value ?? zeroOf(f);
  }
  const v = msg[f.localName];
  // toBinary writes nothing for an empty list or map, whatever the field's presence.
  if (f.fieldKind === 'list') return (v as unknown[]).length > 0 ? v : undefined;
  if (f.fieldKind === 'map') return Object.keys(v as object).length > 0 ? v : undefined;
  if (f.presence !== IMPLICIT) {
    if (v === undefined || !Object.prototype.hasOwnProperty.call(msg, f.localName)) return undefined;
    // A null scalar is refused below (toBinary would write String(null) into a string field).
    return f.fieldKind === 'scalar' ? v : (v ?? zeroOf(f));
  }
  switch (f.fieldKind) {
    case 'enum':
      return v !== f.enum.values[0]!.number ? (v ?? zeroOf(f)) : undefined;
    case 'scalar':
      return isZero(f.scalar, v) ? undefined : (v ?? zeroOf(f));
    default:
      return v;
  }
}

function zeroOf(f: DescField): unknown {
  switch (f.fieldKind) {
    case 'scalar':
      return zeroScalar(f.scalar);
    case 'enum':
      return f.enum.values[0]!.number;
    case 'message':
      return create(f.message);
    default:
      return undefined;
  }
}

function sizeFields(schema: DescMessage, msg: Msg, lengths: number[]): number {
  // As toBinary: a message of another type is refused, not encoded as whatever fields match.
  if (schema.fields.length > 0 && msg.$typeName !== schema.typeName) throw new Error(`cannot use ${schema.typeName} fields with message ${String(msg.$typeName)}`);
  let n = 0;
  for (const f of fieldsOf(schema)) {
    const v = valueOf(msg, f);
    if (v === undefined) continue;
    switch (f.fieldKind) {
      case 'scalar':
        n += varintSize(tagOf(f.number, wireOf(f.scalar))) + sizeChecked(f, f.scalar, v, lengths);
        break;
      case 'enum':
        n += varintSize(tagOf(f.number, WIRE_VARINT)) + sizeChecked(f, ScalarType.INT32, v, lengths);
        break;
      case 'message':
        n += sizeNested(f.number, f.message, v as Msg, lengths);
        break;
      case 'list': {
        const list = v as unknown[];
        if (f.listKind === 'message') {
          for (const item of list) n += sizeNested(f.number, f.message, item as Msg, lengths);
        } else {
          const t = f.listKind === 'enum' ? ScalarType.INT32 : f.scalar;
          if (f.packed) {
            const at = lengths.push(0) - 1;
            let body = 0;
            for (const item of list) body += sizeChecked(f, t, item, lengths);
            lengths[at] = body;
            n += varintSize(tagOf(f.number, WIRE_LEN)) + varintSize(body) + body;
          } else {
            const tag = varintSize(tagOf(f.number, wireOf(t)));
            for (const item of list) n += tag + sizeChecked(f, t, item, lengths);
          }
        }
        break;
      }
      case 'map': {
        const tag = varintSize(tagOf(f.number, WIRE_LEN));
        for (const [key, value] of Object.entries(v as object)) {
          const at = lengths.push(0) - 1;
          let body = 1 + sizeChecked(f, ScalarType.STRING, key, lengths);
          if (f.mapKind === 'message') body += sizeNested(2, f.message, (value ?? create(f.message)) as Msg, lengths);
          else body += 1 + sizeChecked(f, f.mapKind === 'enum' ? ScalarType.INT32 : f.scalar, value, lengths);
          lengths[at] = body;
          n += tag + varintSize(body) + body;
        }
        break;
      }
    }
  }
  for (const u of msg.$unknown ?? []) n += varintSize(tagOf(u.no, u.wireType)) + u.data.byteLength;
  return n;
}

function sizeNested(no: number, schema: DescMessage, msg: Msg, lengths: number[]): number {
  const at = lengths.push(0) - 1;
  const body = sizeFields(schema, msg, lengths);
  lengths[at] = body;
  return varintSize(tagOf(no, WIRE_LEN)) + varintSize(body) + body;
}

/** sizeScalar, with toBinary's wording for a value it refuses: the field named. */
function sizeChecked(f: DescField, t: ScalarType, v: unknown, lengths: number[]): number {
  try {
    return sizeScalar(t, v, lengths);
  } catch (e) {
    throw new Error(`cannot encode field ${f.parent.typeName}.${f.name} to binary: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function writeFields(schema: DescMessage, msg: Msg, w: Writer): void {
  for (const f of fieldsOf(schema)) {
    const v = valueOf(msg, f);
    if (v === undefined) continue;
    switch (f.fieldKind) {
      case 'scalar':
        putVarint(w, tagOf(f.number, wireOf(f.scalar)));
        writeScalar(w, f.scalar, v);
        break;
      case 'enum':
        putVarint(w, tagOf(f.number, WIRE_VARINT));
        writeScalar(w, ScalarType.INT32, v);
        break;
      case 'message':
        writeNested(w, f.number, f.message, v as Msg);
        break;
      case 'list': {
        const list = v as unknown[];
        if (f.listKind === 'message') {
          for (const item of list) writeNested(w, f.number, f.message, item as Msg);
        } else {
          const t = f.listKind === 'enum' ? ScalarType.INT32 : f.scalar;
          if (f.packed) {
            putVarint(w, tagOf(f.number, WIRE_LEN));
            putVarint(w, w.lengths[w.next++]!);
            for (const item of list) writeScalar(w, t, item);
          } else {
            const tag = tagOf(f.number, wireOf(t));
            for (const item of list) {
              putVarint(w, tag);
              writeScalar(w, t, item);
            }
          }
        }
        break;
      }
      case 'map': {
        const tag = tagOf(f.number, WIRE_LEN);
        for (const [key, value] of Object.entries(v as object)) {
          putVarint(w, tag);
          putVarint(w, w.lengths[w.next++]!);
          putVarint(w, tagOf(1, WIRE_LEN));
          writeScalar(w, ScalarType.STRING, key);
          if (f.mapKind === 'message') writeNested(w, 2, f.message, (value ?? create(f.message)) as Msg);
          else {
            const t = f.mapKind === 'enum' ? ScalarType.INT32 : f.scalar;
            putVarint(w, tagOf(2, wireOf(t)));
            writeScalar(w, t, value);
          }
        }
        break;
      }
    }
  }
  for (const u of msg.$unknown ?? []) {
    putVarint(w, tagOf(u.no, u.wireType));
    w.buf.set(u.data, w.pos);
    w.pos += u.data.byteLength;
  }
}

function writeNested(w: Writer, no: number, schema: DescMessage, msg: Msg): void {
  putVarint(w, tagOf(no, WIRE_LEN));
  putVarint(w, w.lengths[w.next++]!);
  writeFields(schema, msg, w);
}

