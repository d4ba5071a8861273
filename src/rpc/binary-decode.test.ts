import { create, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { BatchEncryptRequestSchema } from '../gen/ringfence/v1/batch_pb.js';
import { EncryptRequestSchema, ReEncryptRequestSchema } from '../gen/ringfence/v1/crypto_pb.js';
import { ItemStatusSchema } from '../gen/ringfence/v1/errors_pb.js';
import { SessionRequestSchema } from '../gen/ringfence/v1/session_pb.js';
import { decodeMessage, decodesItself } from './binary-decode.js';
import { allKindsSchema, apiMessages, randomMessage, rng } from './random-message.test-support.js';
import { wireShapeMatches } from './wire-shape.js';

const All = allKindsSchema();
const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

/** What the daemon did before binary-decode.ts: wire-shape.ts, then protobuf-es (undefined for either refusing). */
function reference(schema: DescMessage, bytes: Uint8Array): unknown {
  if (!wireShapeMatches(schema, bytes)) return undefined;
  try {
    return fromBinary(schema, bytes, { readUnknownFields: false });
  } catch {
    return undefined;
  }
}

function sameAsReference(schema: DescMessage, bytes: Uint8Array, what: string): 'decoded' | 'refused' {
  const expected = reference(schema, bytes);
  const got = decodeMessage(schema, bytes);
  if (expected === undefined) expect(got, `${what}: refused by the reference`).toBeUndefined();
  else expect(got, what).toStrictEqual(expected);
  return expected === undefined ? 'refused' : 'decoded';
}

describe('decodeMessage', () => {
  it('decodes every message of the API and every proto3 field kind itself', () => {
    for (const schema of [...apiMessages(), All]) expect(decodesItself(schema), schema.typeName).toBe(true);
  });

  it('gives what fromBinary gives for random messages of every API schema and every field kind, unknown fields of every wire type appended', () => {
    const unknown = ['b8e80796ea01', 'a1f4035555555555555555', 'fa3e03616263', 'fdff1f01020304'].map((h) => Buffer.from(h, 'hex'));
    for (const schema of [...apiMessages(), All]) {
      for (let seed = 1; seed <= 40; seed++) {
        const bytes = Buffer.from(toBinary(schema, randomMessage(rng(seed), schema)));
        expect(sameAsReference(schema, bytes, `${schema.typeName} seed ${seed}`)).toBe('decoded');
        expect(sameAsReference(schema, Buffer.concat([bytes, unknown[seed % 4]!]), `${schema.typeName} seed ${seed} + unknown`)).toBe('decoded');
      }
    }
  }, 60_000);

  it('mutated, cut and spliced messages: refused exactly when wire-shape.ts or fromBinary refuses, else the same message', () => {
    const tally = { decoded: 0, refused: 0 };
    for (const schema of [SessionRequestSchema, BatchEncryptRequestSchema, ReEncryptRequestSchema, ItemStatusSchema, All]) {
      for (let seed = 1; seed <= (schema === All ? 40 : 250); seed++) {
        const r = rng(seed);
        const bytes = Buffer.from(toBinary(schema, randomMessage(r, schema)));
        if (bytes.length === 0) continue;
        for (let k = 0; k < 12; k++) {
          let mutated = Buffer.from(bytes);
          const how = k % 3;
          if (how === 0) for (let flips = 1 + Math.floor(r() * 3); flips > 0; flips--) mutated[Math.floor(r() * mutated.length)] = Math.floor(r() * 256);
          else if (how === 1) mutated = mutated.subarray(0, Math.floor(r() * mutated.length));
          else {
            const at = Math.floor(r() * mutated.length);
            mutated = Buffer.concat([mutated.subarray(0, at), Buffer.from([Math.floor(r() * 256), Math.floor(r() * 256)]), mutated.subarray(at)]);
          }
          tally[sameAsReference(schema, mutated, `${schema.typeName} seed ${seed} mutation ${k}`)]++;
        }
      }
    }
    // Both outcomes were exercised, not one of them only.
    expect(tally.decoded).toBeGreaterThan(1000);
    expect(tally.refused).toBeGreaterThan(1000);
  }, 120_000);

  it('refuses what wire-shape.ts refuses and what fromBinary throws on', () => {
    const cases: [DescMessage, string, string][] = [
      [SessionRequestSchema, '8301 00  8201 00', 'a repeated message field tagged as a group'],
      [SessionRequestSchema, '0a 06  8201 00 8201 00', 'a varint field tagged length-delimited'],
      [BatchEncryptRequestSchema, '0a 02 08 05  0a 06 0a 00 0a 00 0a 00', 'a nested field running past its message'],
      [BatchEncryptRequestSchema, '0a 05 0a 00', 'a length past the end'],
      [BatchEncryptRequestSchema, '0a', 'a tag without its value'],
      [BatchEncryptRequestSchema, '00 00', 'field number 0'],
      [BatchEncryptRequestSchema, 'fb3e fc3e', 'an unknown group'],
      [BatchEncryptRequestSchema, 'fe3e 00', 'wire type 6'],
      [BatchEncryptRequestSchema, 'f83e ffffffffffffffffffff01', 'a varint longer than 10 bytes'],
      [BatchEncryptRequestSchema, '0a 80808080 10', 'a length of 2^32'],
      [EncryptRequestSchema, '8a 80 80 80 80 00 00', 'a tag in 6 bytes (protobuf-es: varint overflows uint32)'],
      [EncryptRequestSchema, '0a 02 c3 28', 'a key name that is not UTF-8'],
      [EncryptRequestSchema, 'f2ffffff1f 00', 'the largest field number, unknown: skipped'],
      [EncryptRequestSchema, '0a 01 61 0a 01 62 12 01 00 12 00', 'fields seen twice: the last wins'],
    ];
    for (const [schema, bytes, what] of cases) sameAsReference(schema, hex(bytes), what);
    expect(decodeMessage(EncryptRequestSchema, hex('8a 80 80 80 80 00 00'))).toBeUndefined();
    expect(decodeMessage(EncryptRequestSchema, hex('0a 02 c3 28'))).toBeUndefined();
    expect(decodeMessage(EncryptRequestSchema, hex('0a 01 61 0a 01 62'))?.keyName).toBe('b');
    // Nesting: protobuf-es' recursion limit, 100 levels with the top one.
    expect(sameAsReference(SessionRequestSchema, nest(99), '100 levels')).toBe('decoded');
    expect(sameAsReference(SessionRequestSchema, nest(100), '101 levels')).toBe('refused');
    // The same through a singular message field and through a map's message values (the entry is a level too).
    const sub = All.fields.find((f) => f.name === 'sub')!.number;
    expect(sameAsReference(All, nest(99, sub), '100 levels of sub')).toBe('decoded');
    expect(sameAsReference(All, nest(100, sub), '101 levels of sub')).toBe('refused');
    const mapSub = All.fields.find((f) => f.name === 'map_sub')!.number;
    const viaMap = (levels: number) => {
      let inner: Buffer = Buffer.alloc(0);
      for (let i = 0; i < levels; i++) {
        const entry = Buffer.concat([Buffer.from([0x12]), varint(inner.length), inner]); // value = the message so far
        inner = Buffer.concat([tag(mapSub), varint(entry.length), entry]);
      }
      return inner;
    };
    expect(sameAsReference(All, viaMap(49), '99 levels through map entries')).toBe('decoded');
    expect(sameAsReference(All, viaMap(50), '101 levels through map entries')).toBe('refused');
    const mapD = All.fields.find((f) => f.name === 'map_d')!.number;
    const entry = Buffer.concat([tag(mapD), hex('03 0a 01 6b')]); // key "k", no value
    expect(sameAsReference(All, nest(98, sub, entry), 'a map entry at level 100')).toBe('decoded');
    expect(sameAsReference(All, nest(99, sub, entry), 'a map entry at level 101')).toBe('refused');
  });

  it('keeps a string\'s leading U+FEFF, which protobuf-es drops as a byte order mark: a name is read as it was sent', () => {
    // EncryptRequest.key_name "\ufeffk1": the SDK writes it as given; the daemon read "k1" and acted on
    // that key, where a name it does not allow is INVALID_ARGUMENT (found by review).
    expect(decodeMessage(EncryptRequestSchema, hex('0a 05 efbbbf 6b 31'))?.keyName).toBe('\ufeffk1');
    expect(fromBinary(EncryptRequestSchema, hex('0a 05 efbbbf 6b 31')).keyName).toBe('k1'); // what protobuf-es gives
    // Every place a string is read (short and long, singular, listed, in a oneof, a map's key and value) gives back what was written.
    const bom = '\ufeff';
    const long = `${bom}${'x'.repeat(100)}`;
    const sent = create(All, { s: bom, listS: [`${bom}a`, long], o: { case: 'ooS', value: `${bom}${bom}` }, mapD: { [`${bom}key`]: 1 }, sub: create(All, { s: long }) } as never) as Record<string, unknown>;
    const got = decodeMessage(All, toBinary(All, sent as never)) as Record<string, unknown> | undefined;
    expect(got && [got.s, got.listS, got.o, Object.keys(got.mapD as object), (got.sub as { s: string }).s]).toEqual([bom, [`${bom}a`, long], { case: 'ooS', value: `${bom}${bom}` }, [`${bom}key`], long]);
  });

  it('merges a message field seen twice, keeps a oneof case only while it repeats, and leaves bytes as views of the input', () => {
    const a = toBinary(SessionRequestSchema, create(SessionRequestSchema, { id: 7n, op: { case: 'encrypt', value: { keyName: 'k', plaintext: Uint8Array.of(1, 2) } } }));
    const b = toBinary(SessionRequestSchema, create(SessionRequestSchema, { op: { case: 'encrypt', value: { associatedData: Uint8Array.of(9) } } }));
    const c = toBinary(SessionRequestSchema, create(SessionRequestSchema, { op: { case: 'hash', value: { data: Uint8Array.of(5) } } }));
    for (const parts of [[a, b], [a, c], [a, c, b], [a, a]]) {
      const bytes = Buffer.concat(parts);
      expect(sameAsReference(SessionRequestSchema, bytes, `${parts.length} parts`)).toBe('decoded');
    }
    const input = Buffer.concat([a, b]);
    const m = decodeMessage(SessionRequestSchema, input)!;
    expect(m.op.case).toBe('encrypt');
    const op = m.op.value as { keyName: string; plaintext: Uint8Array; associatedData: Uint8Array };
    expect([op.keyName, [...op.plaintext], [...op.associatedData]]).toEqual(['k', [1, 2], [9]]);
    expect(op.plaintext.buffer).toBe(input.buffer); // a view, as fromBinary gives, not a copy
  });
});

/** A message with field `no` (SessionRequest.more by default) nested `levels` deep (levels + 1 messages with the top one) around `innermost`. */
function nest(levels: number, no = 16, innermost = Buffer.alloc(0)): Buffer {
  let inner: Buffer = innermost;
  for (let i = 0; i < levels; i++) inner = Buffer.concat([tag(no), varint(inner.length), inner]);
  return inner;
}

/** A length-delimited tag. */
const tag = (no: number) => varint(no * 8 + 2);

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}
