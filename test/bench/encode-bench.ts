/**
 * protobuf-es toBinary against src/rpc/binary-encode.ts, and protobuf-es fromBinary (after
 * wire-shape.ts, as the daemon decoded before) against src/rpc/binary-decode.ts, for the shapes
 * ringfence sends most, in this process (no guest, no gRPC): `npm run bench:encode`. Prints
 * microseconds per message and the ratio, both measured in the same run; asserts nothing
 * (binary-encode.test.ts and binary-decode.test.ts check the results).
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EncryptRequestSchema, EncryptResponseSchema } from '../../src/gen/ringfence/v1/crypto_pb.js';
import { SessionRequestSchema, SessionResponseSchema } from '../../src/gen/ringfence/v1/session_pb.js';
import { EncryptStreamRequestSchema } from '../../src/gen/ringfence/v1/stream_pb.js';
import { decodeMessage } from '../../src/rpc/binary-decode.js';
import { encodeMessage } from '../../src/rpc/binary-encode.js';
import { wireShapeMatches } from '../../src/rpc/wire-shape.js';

const SECONDS = Number(process.env.RINGFENCE_BENCH_SECONDS ?? 1);
const PACKED = 51; // operations per Session message as the SDK packs 1 KiB encrypts (60 KiB cap)

function usPerCall(f: () => unknown): number {
  for (let i = 0; i < 50; i++) f();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    f();
    n++;
  }
  return ((performance.now() - t0) * 1000) / n;
}

const op = (i: number) => create(SessionRequestSchema, { id: BigInt(1000 + i), op: { case: 'encrypt', value: { keyName: 'bench-key', plaintext: randomBytes(1024) } } });
const answer = (i: number) => create(SessionResponseSchema, { id: BigInt(1000 + i), result: { case: 'encrypt', value: { ciphertext: randomBytes(1024 + 52), keyName: 'bench-key', keyVersion: 1 } } });
const ids = Array.from({ length: PACKED }, (_, i) => i);
const shapes: [string, DescMessage, MessageShape<DescMessage>][] = [
  [`Session request, ${PACKED} encrypts of 1 KiB`, SessionRequestSchema, create(SessionRequestSchema, { ...op(0), more: ids.slice(1).map(op) })],
  [`Session response, ${PACKED} ciphertexts`, SessionResponseSchema, create(SessionResponseSchema, { ...answer(0), more: ids.slice(1).map(answer) })],
  ['EncryptRequest, 1 KiB plaintext', EncryptRequestSchema, create(EncryptRequestSchema, { keyName: 'bench-key', plaintext: randomBytes(1024) })],
  ['EncryptResponse, 1 KiB ciphertext', EncryptResponseSchema, create(EncryptResponseSchema, { ciphertext: randomBytes(1076), keyName: 'bench-key', keyVersion: 1 })],
  ['EncryptStream chunk, 1 MiB', EncryptStreamRequestSchema, create(EncryptStreamRequestSchema, { frame: { case: 'chunk', value: { plaintext: randomBytes(1 << 20) } } })],
];

console.log(`protobuf encoding, node ${process.version}, ${SECONDS} s per cell\n`);
console.log('| message | toBinary us | encodeMessage us | ratio |');
console.log('|---|---:|---:|---:|');
for (const [name, schema, message] of shapes) {
  const a = usPerCall(() => toBinary(schema, message));
  const b = usPerCall(() => encodeMessage(schema, message));
  console.log(`| ${name} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(1)}x |`);
}

console.log('\n| message | wire-shape + fromBinary us | decodeMessage us | ratio |');
console.log('|---|---:|---:|---:|');
for (const [name, schema, message] of shapes) {
  const bytes = Buffer.from(toBinary(schema, message));
  const a = usPerCall(() => wireShapeMatches(schema, bytes) && fromBinary(schema, bytes, { readUnknownFields: false }));
  const b = usPerCall(() => decodeMessage(schema, bytes));
  console.log(`| ${name} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(1)}x |`);
}
