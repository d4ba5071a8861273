import { describe, expect, it } from 'vitest';
import { create, createFileRegistry, fromBinary, toBinary, ScalarType, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { FieldDescriptorProto_Label as Label, FieldDescriptorProto_Type as Type, FileDescriptorProtoSchema, StructSchema, TimestampSchema } from '@bufbuild/protobuf/wkt';
import { CryptoService } from '../gen/ringfence/v1/crypto_service_pb.js';
import { KeyService } from '../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../gen/ringfence/v1/status_service_pb.js';
import { SessionRequestSchema, SessionResponseSchema } from '../gen/ringfence/v1/session_pb.js';
import { DecryptRequestSchema, EncryptRequestSchema } from '../gen/ringfence/v1/crypto_pb.js';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { StatusSchema } from '../gen/google/rpc/status_pb.js';
import { encodedSize, encodeMessage, isSupported } from './binary-encode.js';

/** Every message the API's methods can carry, nested ones included. */
function apiMessages(): DescMessage[] {
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
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T,>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
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

function randomMessage(r: Rand, schema: DescMessage, depth = 0): MessageShape<DescMessage> {
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
function allKindsSchema(): DescMessage {
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

const schemas = apiMessages();
const All = allKindsSchema();

/** toBinary's bytes (hex) or that it threw; the same for encodeMessage. */
function outcome(f: () => Uint8Array): string {
  try {
    return Buffer.from(f()).toString('hex');
  } catch {
    return 'throws';
  }
}

describe('encodeMessage', () => {
  it('covers the API: every message reachable from the three services, all encoded here (none handed to toBinary)', () => {
    expect(schemas.length).toBeGreaterThan(60);
    expect(schemas).toContain(SessionRequestSchema);
    expect(schemas.filter((s) => !isSupported(s)).map((s) => s.typeName)).toEqual([]);
    expect(isSupported(All)).toBe(true);
    expect(All.fields[0]!.number).toBeGreaterThan(All.fields[1]!.number);
  });

  // Seeded, so a failure reproduces; the timeout is for a loaded machine (t.All takes 1-2 s idle).
  it.each([...schemas, All].map((s) => [s.typeName, s] as const))('gives toBinary\'s bytes for random %s messages', { timeout: 60_000 }, (_name, schema) => {
    for (let seed = 1; seed <= (schema === All ? 30 : 60); seed++) {
      const m = randomMessage(rng(seed * 7919 + schema.typeName.length), schema);
      const want = toBinary(schema, m);
      const got = encodeMessage(schema, m);
      expect(Buffer.compare(got, want), `seed ${seed}`).toBe(0);
      expect(encodedSize(schema, m)).toBe(want.length);
      expect(fromBinary(schema, new Uint8Array(got))).toEqual(fromBinary(schema, want));
    }
  });

  it('gives toBinary\'s bytes for messages decoded from the wire (unknown fields of every wire type kept)', () => {
    for (const schema of [All, SessionRequestSchema, SessionResponseSchema]) {
      for (let seed = 1; seed <= 200; seed++) {
        const r = rng(seed);
        const known = toBinary(schema, randomMessage(r, schema));
        // Fields this schema does not have, after the known ones: varint, 64-bit, length, 32-bit.
        const unknown = pick(r, ['b8e80796ea01', 'a1f4035555555555555555', 'fa3e03616263', 'fdff1f01020304', '']);
        const wire = Buffer.concat([known, Buffer.from(unknown, 'hex')]);
        const decoded = fromBinary(schema, wire);
        expect(encodeMessage(schema, decoded).toString('hex'), `seed ${seed}`).toBe(Buffer.from(toBinary(schema, decoded)).toString('hex'));
      }
    }
  });

  it('writes what toBinary writes for set fields that hold undefined or null, and missing messages', () => {
    const cases: [DescMessage, unknown][] = [
      [All, create(All, { o: { case: 'ooSub', value: undefined } } as never)],
      [All, { ...create(All), o: { case: 'ooSub', value: null } }],
      [All, { ...create(All), o: { case: 'ooI32', value: undefined } }],
      [All, { ...create(All), o: { case: 'ooE', value: undefined } }],
      [All, { ...create(All), o: { case: 'ooS', value: undefined } }],
      [All, { ...create(All), s: undefined }],
      [All, { ...create(All), e: undefined }],
      [All, { ...create(All), i64: undefined, by: undefined, d: undefined, b: undefined }],
      [All, { ...create(All), optE: null }],
      [All, { ...create(All), mapSub: { a: undefined } }],
      [SessionRequestSchema, undefined],
      // An explicit-presence field counts only as an own property, not one inherited.
      [All, Object.assign(Object.create({ optS: 'inherited', optI32: 5 }) as object, create(All))],
    ];
    cases.forEach(([schema, m], i) => {
      const want = outcome(() => toBinary(schema, m as MessageShape<DescMessage>));
      expect(want, `case ${i}`).not.toBe('throws');
      expect(outcome(() => encodeMessage(schema, m as MessageShape<DescMessage>)), `case ${i}`).toBe(want);
    });
    // Where toBinary writes String(value) into a string (or throws for other types), this refuses.
    for (const m of [{ ...create(All), optS: null }, { ...create(All), mapE: { a: undefined } }, { ...create(ErrorInfoSchema), metadata: { field: undefined } }]) {
      const schema = m.$typeName === 't.All' ? All : ErrorInfoSchema;
      expect(() => encodeMessage(schema, m as MessageShape<DescMessage>)).toThrow(/^cannot encode field/);
    }
  });

  it('refuses a message of another type, at the top or nested, as toBinary does', () => {
    const decrypt = create(DecryptRequestSchema, { ciphertext: Uint8Array.of(1) });
    const cases: [DescMessage, unknown][] = [
      [EncryptRequestSchema, decrypt],
      [SessionRequestSchema, { ...create(SessionRequestSchema), op: { case: 'encrypt', value: decrypt } }],
      [SessionRequestSchema, { ...create(SessionRequestSchema), more: [decrypt] }],
    ];
    for (const [schema, m] of cases) {
      expect(() => toBinary(schema, m as MessageShape<DescMessage>)).toThrow();
      expect(() => encodeMessage(schema, m as MessageShape<DescMessage>)).toThrow(/cannot use/);
    }
  });

  it('writes a Session request as the protobuf encoding rules give it (worked by hand)', () => {
    const m = create(SessionRequestSchema, { id: 1n, op: { case: 'encrypt', value: { keyName: 'k', plaintext: Uint8Array.of(0xaa) } } });
    // field 1 varint 1; field 2 length 6 { field 1 "k"; field 2 bytes [aa] }
    expect(encodeMessage(SessionRequestSchema, m).toString('hex')).toBe('0801' + '1206' + '0a016b' + '1201aa');
    const packed = create(SessionRequestSchema, { id: 300n, more: [m] });
    // id 300 = varint ac 02; field 16 (tag 0x82 0x01) length 10
    expect(encodeMessage(SessionRequestSchema, packed).toString('hex')).toBe('08ac02' + '82010a' + '0801' + '1206' + '0a016b' + '1201aa');
  });

  it('refuses out-of-range numbers as toBinary does, instead of writing something else', () => {
    const bad = [
      create(SessionResponseSchema, { id: 1n, result: { case: 'encrypt', value: { ciphertext: new Uint8Array(1), keyVersion: -1 } } }),
      create(SessionResponseSchema, { id: 1n, result: { case: 'encrypt', value: { keyVersion: 2 ** 32 } } }),
      create(SessionResponseSchema, { id: 1n, result: { case: 'encrypt', value: { keyVersion: 1.5 } } }),
      create(SessionResponseSchema, { id: -1n }),
      create(SessionResponseSchema, { id: 2n ** 64n }),
      create(TimestampSchema, { seconds: 2n ** 63n }),
      create(TimestampSchema, { nanos: 2 ** 31 }),
    ] as MessageShape<DescMessage>[];
    for (const m of bad) {
      const schema: DescMessage = m.$typeName === TimestampSchema.typeName ? TimestampSchema : SessionResponseSchema;
      expect(() => toBinary(schema, m)).toThrow();
      expect(() => encodeMessage(schema, m)).toThrow(/^cannot encode field [\w.]+ to binary: invalid (u?int(32|64))/);
    }
    // Floats out of range, and a bigint where a double belongs.
    for (const m of [{ ...create(All), f: 3.5e38 }, { ...create(All), listF: [1, -1e39] }, { ...create(All), d: 1n }]) {
      expect(() => toBinary(All, m as MessageShape<DescMessage>)).toThrow();
      expect(() => encodeMessage(All, m as MessageShape<DescMessage>)).toThrow();
    }
  });

  it('hands a schema it does not cover to toBinary whole (google.protobuf.Struct)', () => {
    expect(isSupported(StructSchema)).toBe(false);
    const m = create(StructSchema, { fields: { a: { kind: { case: 'numberValue', value: 1 } } } });
    expect(Buffer.compare(encodeMessage(StructSchema, m), toBinary(StructSchema, m))).toBe(0);
  });
});
