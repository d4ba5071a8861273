import { describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { StructSchema, TimestampSchema } from '@bufbuild/protobuf/wkt';
import { SessionRequestSchema, SessionResponseSchema } from '../gen/ringfence/v1/session_pb.js';
import { DecryptRequestSchema, EncryptRequestSchema } from '../gen/ringfence/v1/crypto_pb.js';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { encodedSize, encodeMessage, isSupported } from './binary-encode.js';
import { allKindsSchema, apiMessages, pick, randomMessage, rng } from './random-message.test-support.js';

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
