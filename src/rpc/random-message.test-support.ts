/**
 * Messages for property tests of the wire code: every message of the API, a schema with every
 * proto3 field kind, and seeded random messages of any schema (binary-encode.test.ts, wire-shape.test.ts).
 */
import { create, createFileRegistry, ScalarType, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { FieldDescriptorProto_Label as Label, FieldDescriptorProto_Type as Type, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { CryptoService } from '../gen/ringfence/v1/crypto_service_pb.js';
import { KeyService } from '../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../gen/ringfence/v1/status_service_pb.js';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../gen/google/rpc/status_pb.js';

/** Every message the API's methods can carry, nested ones included. */
export function apiMessages(): DescMessage[] {
  const seen = new Map<string, DescMessage>();
  const stack: DescMessage[] = [StatusSchema, ErrorInfoSchema];
  for (const s of [CryptoService, KeyService, StatusService]) for (const m of s.methods) stack.push(m.input, m.output);
  while (stack.length) {
    const m = stack.pop()!;
    if (seen.has(m.typeName)) continue;
    seen.set(m.typeName, m);
    for (const f of m.fields) if (f.message) stack.push(f.message);
  }
  return [...seen.values()];
}

/** mulberry32: a seeded generator, so a failure names a seed that reproduces it. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
export const pick = <T,>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const STRINGS = ['', 'k', 'app-payments', 'é', '日本語', '😀 emoji', 'lone \ud800 surrogate', 'x'.repeat(200)];

function randomScalar(r: Rand, t: ScalarType): unknown {
  switch (t) {
    case ScalarType.STRING:
      return pick(r, STRINGS);
    case ScalarType.BYTES: {
      const bytes = Uint8Array.from({ length: pick(r, [0, 1, 12, 127, 128, 300, 5000]) }, () => Math.floor(r() * 256));
      // A Buffer slice of Node's shared pool, as grpc-js hands the daemon its bytes.
      return r() < 0.3 ? Buffer.from(bytes) : bytes;
    }
    case ScalarType.BOOL:
      return r() < 0.5;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return pick(r, [0, 1, 127, 128, 16_383, 16_384, 2 ** 21, 2 ** 28, 2 ** 32 - 1, Math.floor(r() * 2 ** 32)]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return pick(r, [0, 1, -1, 300, -300, 2 ** 31 - 1, -(2 ** 31), Math.floor(r() * 2 ** 32) - 2 ** 31]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return pick(r, [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 35n + 7n, 2n ** 64n - 1n, BigInt(Math.floor(r() * 2 ** 53)), '18446744073709551615', 4_294_967_296]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick(r, [0n, 1n, -1n, 2n ** 40n, -(2n ** 40n), 2n ** 63n - 1n, -(2n ** 63n), '-9223372036854775808', -7]);
    case ScalarType.DOUBLE:
      return pick(r, [0, -0, 1.5, -1e300, Number.NaN, Number.POSITIVE_INFINITY]);
    case ScalarType.FLOAT:
      return pick(r, [0, -0, 1.5, -2.25, Number.NaN]);
  }
}

function randomField(r: Rand, f: DescField, depth: number): unknown {
  switch (f.fieldKind) {
    case 'scalar':
      return randomScalar(r, f.scalar);
    case 'enum':
      // Open enums: a number the schema does not name is kept and written too.
      return r() < 0.8 ? pick(r, f.enum.values).number : pick(r, [99, -5]);
    case 'message':
      return randomMessage(r, f.message, depth + 1);
    case 'list':
      return Array.from({ length: Math.floor(r() * 4) }, () =>
        f.listKind === 'message' ? randomMessage(r, f.message, depth + 1) : f.listKind === 'enum' ? pick(r, [...f.enum.values.map((v) => v.number), 99, -5]) : randomScalar(r, f.scalar),
      );
    case 'map':
      return Object.fromEntries(
        Array.from({ length: Math.floor(r() * 4) }, (_, i) => [`${pick(r, STRINGS)}${i}`, f.mapKind === 'message' ? randomMessage(r, f.message, depth + 1) : f.mapKind === 'enum' ? pick(r, f.enum.values).number : randomScalar(r, f.scalar)]),
      );
  }
}

export function randomMessage(r: Rand, schema: DescMessage, depth = 0): MessageShape<DescMessage> {
  const m = create(schema) as Record<string, unknown>;
  // t.All nests itself in five fields: two levels keep its messages to a few hundred KiB.
  if (depth > (schema.typeName === 't.All' ? 1 : 3)) return m as MessageShape<DescMessage>;
  for (const o of schema.oneofs) {
    if (r() < 0.3) continue;
    const f = pick(r, o.fields);
    m[o.localName] = { case: f.localName, value: randomField(r, f, depth) };
  }
  for (const f of schema.fields) if (!f.oneof && r() < 0.6) m[f.localName] = randomField(r, f, depth);
  // Unknown fields are written back as they were read: data is the bytes after the tag.
  if (r() < 0.15) {
    (m as { $unknown?: unknown }).$unknown = [
      { no: 999, wireType: 2, data: Uint8Array.of(3, 1, 2, 3) },
      { no: 2 ** 28 + 3, wireType: 0, data: Uint8Array.of(0x96, 0x01) },
      { no: 4000, wireType: 1, data: new Uint8Array(8).fill(7) },
      { no: 5000, wireType: 5, data: Uint8Array.of(1, 2, 3, 4) },
    ].filter(() => r() < 0.6);
  }
  return m as MessageShape<DescMessage>;
}

/**
 * A test message with every field kind proto3 has, which the API does not all use: each scalar
 * type singular, `optional`, packed and unpacked repeated and in a oneof; enums with a negative
 * value; nested, repeated and oneof messages; maps of doubles, enums and messages; the largest
 * field number.
 */
export function allKindsSchema(): DescMessage {
  const scalars: [string, Type][] = [['d', Type.DOUBLE], ['f', Type.FLOAT], ['i64', Type.INT64], ['u64', Type.UINT64], ['i32', Type.INT32], ['fx64', Type.FIXED64], ['fx32', Type.FIXED32], ['b', Type.BOOL], ['s', Type.STRING], ['by', Type.BYTES], ['u32', Type.UINT32], ['sfx32', Type.SFIXED32], ['sfx64', Type.SFIXED64], ['s32', Type.SINT32], ['s64', Type.SINT64]];
  const one = Label.OPTIONAL;
  let no = 1;
  const field: object[] = [];
  const oneofDecl: object[] = [{ name: 'o' }];
  for (const [n, type] of scalars) field.push({ name: n, number: no++, type, label: one });
  for (const [n, type] of scalars) {
    field.push({ name: `opt_${n}`, number: no++, type, label: one, proto3Optional: true, oneofIndex: oneofDecl.length });
    oneofDecl.push({ name: `_opt_${n}` });
  }
  for (const [n, type] of scalars) field.push({ name: `list_${n}`, number: no++, type, label: Label.REPEATED });
  for (const [n, type] of scalars) field.push({ name: `unpacked_${n}`, number: no++, type, label: Label.REPEATED, options: type === Type.STRING || type === Type.BYTES ? undefined : { packed: false } });
  for (const [n, type] of scalars) field.push({ name: `oo_${n}`, number: no++, type, label: one, oneofIndex: 0 });
  const msg = (name: string, typeName: string, label = one, more = {}) => field.push({ name, number: no++, type: Type.MESSAGE, typeName, label, ...more });
  field.push({ name: 'e', number: no++, type: Type.ENUM, typeName: '.t.E', label: one }, { name: 'list_e', number: no++, type: Type.ENUM, typeName: '.t.E', label: Label.REPEATED });
  field.push({ name: 'oo_e', number: no++, type: Type.ENUM, typeName: '.t.E', label: one, oneofIndex: 0 });
  msg('sub', '.t.All');
  msg('list_sub', '.t.All', Label.REPEATED);
  msg('oo_sub', '.t.All', one, { oneofIndex: 0 });
  msg('map_d', '.t.All.MapDEntry', Label.REPEATED);
  msg('map_e', '.t.All.MapEEntry', Label.REPEATED);
  msg('map_sub', '.t.All.MapSubEntry', Label.REPEATED);
  field.push({ name: 'big', number: 536_870_911, type: Type.INT32, label: one });
  // Declared in reverse: toBinary writes fields in number order, whatever the declaration's.
  field.reverse();
  const entry = (name: string, value: object) => ({ name, field: [{ name: 'key', number: 1, type: Type.STRING, label: one }, { name: 'value', number: 2, label: one, ...value }], options: { mapEntry: true } });
  const file = create(FileDescriptorProtoSchema, {
    name: 't/all.proto',
    package: 't',
    syntax: 'proto3',
    enumType: [{ name: 'E', value: [{ name: 'E_ZERO', number: 0 }, { name: 'E_ONE', number: 1 }, { name: 'E_NEG', number: -3 }] }],
    messageType: [{ name: 'All', field, oneofDecl, nestedType: [entry('MapDEntry', { type: Type.DOUBLE }), entry('MapEEntry', { type: Type.ENUM, typeName: '.t.E' }), entry('MapSubEntry', { type: Type.MESSAGE, typeName: '.t.All' })] }],
  } as never);
  return createFileRegistry(file, () => undefined).getMessage('t.All')!;
}
