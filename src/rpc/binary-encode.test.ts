import { describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary, ScalarType, type DescField, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { StructSchema, TimestampSchema } from '@bufbuild/protobuf/wkt';
import { CryptoService } from '../gen/ringfence/v1/crypto_service_pb.js';
import { KeyService } from '../gen/ringfence/v1/key_service_pb.js';
import { StatusService } from '../gen/ringfence/v1/status_service_pb.js';
import { SessionRequestSchema, SessionResponseSchema } from '../gen/ringfence/v1/session_pb.js';
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
    case ScalarType.BYTES:
      return Uint8Array.from({ length: pick(r, [0, 1, 12, 127, 128, 300, 20_000]) }, () => Math.floor(r() * 256));
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
      return pick(r, [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 35n + 7n, 2n ** 64n - 1n, BigInt(Math.floor(r() * 2 ** 53))]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick(r, [0n, 1n, -1n, 2n ** 40n, -(2n ** 40n), 2n ** 63n - 1n, -(2n ** 63n)]);
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
        f.listKind === 'message' ? randomMessage(r, f.message, depth + 1) : f.listKind === 'enum' ? pick(r, f.enum.values).number : randomScalar(r, f.scalar),
      );
    case 'map':
      return Object.fromEntries(
        Array.from({ length: Math.floor(r() * 4) }, (_, i) => [`${pick(r, STRINGS)}${i}`, f.mapKind === 'message' ? randomMessage(r, f.message, depth + 1) : f.mapKind === 'enum' ? pick(r, f.enum.values).number : randomScalar(r, f.scalar)]),
      );
  }
}

function randomMessage(r: Rand, schema: DescMessage, depth = 0): MessageShape<DescMessage> {
  const m = create(schema) as Record<string, unknown>;
  if (depth > 3) return m as MessageShape<DescMessage>;
  for (const o of schema.oneofs) {
    if (r() < 0.3) continue;
    const f = pick(r, o.fields);
    m[o.localName] = { case: f.localName, value: randomField(r, f, depth) };
  }
  for (const f of schema.fields) if (!f.oneof && r() < 0.6) m[f.localName] = randomField(r, f, depth);
  // Unknown fields are written back as they were read.
  if (r() < 0.1) (m as { $unknown?: unknown }).$unknown = [{ no: 999, wireType: 2, data: Uint8Array.of(3, 1, 2, 3) }];
  return m as MessageShape<DescMessage>;
}

const schemas = apiMessages();

describe('encodeMessage', () => {
  it('covers the API: every message reachable from the three services, all encoded here (none handed to toBinary)', () => {
    expect(schemas.length).toBeGreaterThan(60);
    expect(schemas).toContain(SessionRequestSchema);
    expect(schemas.filter((s) => !isSupported(s)).map((s) => s.typeName)).toEqual([]);
  });

  it.each(schemas.map((s) => [s.typeName, s] as const))('gives toBinary\'s bytes for random %s messages', (_name, schema) => {
    for (let seed = 1; seed <= 60; seed++) {
      const m = randomMessage(rng(seed * 7919 + schema.typeName.length), schema);
      const want = toBinary(schema, m);
      const got = encodeMessage(schema, m);
      expect(Buffer.compare(got, want), `seed ${seed}`).toBe(0);
      expect(encodedSize(schema, m)).toBe(want.length);
      expect(fromBinary(schema, new Uint8Array(got))).toEqual(fromBinary(schema, want));
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
      expect(() => encodeMessage(schema, m)).toThrow(/invalid (u?int(32|64))/);
    }
  });

  it('hands a schema it does not cover to toBinary whole (google.protobuf.Struct)', () => {
    expect(isSupported(StructSchema)).toBe(false);
    const m = create(StructSchema, { fields: { a: { kind: { case: 'numberValue', value: 1 } } } });
    expect(Buffer.compare(encodeMessage(StructSchema, m), toBinary(StructSchema, m))).toBe(0);
  });
});
