import { fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { BatchEncryptRequestSchema } from '../gen/ringfence/v1/batch_pb.js';
import { SessionRequestSchema } from '../gen/ringfence/v1/session_pb.js';
import { allKindsSchema, apiMessages, randomMessage, rng } from './random-message.test-support.js';
import { wireShapeMatches } from './wire-shape.js';

const All = allKindsSchema();
const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

/** Top-level tags per field number, walking the wire format as written (the input is known well formed). */
function topLevelTags(b: Uint8Array): Map<number, number> {
  const counts = new Map<number, number>();
  let at = 0;
  const varint = () => {
    let v = 0;
    for (let s = 0; ; s += 7) {
      const byte = b[at++]!;
      v += (byte & 0x7f) * 2 ** s;
      if (!(byte & 0x80)) return v;
    }
  };
  while (at < b.length) {
    const tag = varint();
    counts.set(Math.floor(tag / 8), (counts.get(Math.floor(tag / 8)) ?? 0) + 1);
    const wire = tag % 8;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else {
      const length = varint(); // not `at += varint()`: that adds to `at` as it was before the length
      at += length;
    }
  }
  return counts;
}

describe('wireShapeMatches', () => {
  it('passes whatever protobuf-es writes, for every message of the API and every proto3 field kind, with unknown fields of every wire type', () => {
    const unknown = ['b8e80796ea01', 'a1f4035555555555555555', 'fa3e03616263', 'fdff1f01020304'].map((h) => Buffer.from(h, 'hex'));
    for (const schema of [...apiMessages(), All]) {
      for (let seed = 1; seed <= 40; seed++) {
        const bytes = toBinary(schema, randomMessage(rng(seed), schema));
        expect(wireShapeMatches(schema, bytes), `${schema.typeName} seed ${seed}`).toBe(true);
        expect(wireShapeMatches(schema, Buffer.concat([bytes, unknown[seed % 4]!])), `${schema.typeName} seed ${seed} + unknown`).toBe(true);
      }
    }
  });

  it('refuses the shapes that protobuf-es reads differently from the wire format (found by review)', () => {
    const refused: [DescMessage, string, string][] = [
      // SessionRequest.more (16) tagged as a group: the decoder reads a length and a message anyway.
      [SessionRequestSchema, '8301 00  8201 00  8201 00', 'a repeated message field tagged as a group'],
      // SessionRequest.id (1, a varint) tagged length-delimited over the rest: read as a varint, and the rest as fields.
      [SessionRequestSchema, '0a 06  8201 00 8201 00', 'a varint field tagged length-delimited'],
      [BatchEncryptRequestSchema, '0b 00  0a 00 0a 00', 'a group tag for the items'],
      // An item whose key_name (1, a string) is tagged as a varint: read as a string, it runs past its item.
      [BatchEncryptRequestSchema, '0a 02 08 05  0a 06 0a 00 0a 00 0a 00', 'a nested field running past its message'],
      [BatchEncryptRequestSchema, '0a 05 0a 00', 'a length past the end'],
      [BatchEncryptRequestSchema, '0a', 'a tag without its value'],
      [BatchEncryptRequestSchema, 'fa3e', 'an unknown field without its length'],
      [BatchEncryptRequestSchema, '00 00', 'field number 0'],
      [BatchEncryptRequestSchema, 'fb3e fc3e', 'an unknown group'],
      [BatchEncryptRequestSchema, 'fe3e 00', 'wire type 6'],
      [BatchEncryptRequestSchema, 'f83e ffffffffffffffffffff01', 'a varint longer than 10 bytes'],
      [BatchEncryptRequestSchema, '0a 80808080 10', 'a length of 2^32, which the decoder reads as 0'],
      [SessionRequestSchema, '8201 03 8201 05  0000000000', 'a nested message whose field runs past it, not past the buffer'],
    ];
    for (const [schema, bytes, what] of refused) expect(wireShapeMatches(schema, hex(bytes)), what).toBe(false);
    // Nesting deeper than protobuf-es decodes (its recursion limit, 100 with the top level).
    expect(wireShapeMatches(SessionRequestSchema, nest(101)), '101 levels').toBe(false);
    expect(wireShapeMatches(SessionRequestSchema, nest(90)), '90 levels').toBe(true);
  });

  it('mutated messages: whenever the shape passes and the message decodes, each repeated message field has one item per tag on the wire', () => {
    let passed = 0;
    for (const schema of [BatchEncryptRequestSchema, SessionRequestSchema, All]) {
      const lists = schema.fields.filter((f) => f.fieldKind === 'list' && f.listKind === 'message');
      for (let seed = 1; seed <= 300; seed++) {
        const r = rng(seed);
        const bytes = Buffer.from(toBinary(schema, randomMessage(r, schema)));
        for (let k = 0; k < 10 && bytes.length > 0; k++) {
          const mutated = Buffer.from(bytes);
          for (let flips = 1 + Math.floor(r() * 3); flips > 0; flips--) mutated[Math.floor(r() * mutated.length)] = Math.floor(r() * 256);
          if (!wireShapeMatches(schema, mutated)) continue;
          let decoded: Record<string, unknown>;
          try {
            decoded = fromBinary(schema, mutated, { readUnknownFields: false }) as unknown as Record<string, unknown>;
          } catch {
            continue;
          }
          passed++;
          const tags = topLevelTags(mutated);
          for (const f of lists) expect((decoded[f.localName] as unknown[]).length, `${schema.typeName}.${f.name} seed ${seed}`).toBe(tags.get(f.number) ?? 0);
        }
      }
    }
    expect(passed).toBeGreaterThan(500); // the property was exercised, not skipped
  });
});

/** A SessionRequest with `more` nested `levels` deep. */
function nest(levels: number): Buffer {
  let inner: Buffer = Buffer.alloc(0);
  for (let i = 0; i < levels; i++) inner = Buffer.concat([Buffer.from([0x82, 0x01]), varint(inner.length), inner]);
  return inner;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}
