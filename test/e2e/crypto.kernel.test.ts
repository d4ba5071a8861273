/**
 * Every CryptoService RPC (unary, batch, session) and StatusService through the SDK against a real
 * ringfenced. Independent truth: node:crypto holding the same imported key material decrypts what the
 * daemon encrypted (and the reverse), computes the same HMACs and hashes; for BLAKE2b-256 (node has
 * none), vectors generated with CPython's hashlib, as no published set exists (test/vectors/README.md).
 * Attacks: every flipped byte of a ciphertext fails (property test); known key and payload bytes never
 * reach the logs or the state directory.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorReason, RingfenceClient, Suite, isFailedPrecondition, isInvalidArgument, isNotFound, isResourceExhausted } from '../../src/client/sdk/index.js';
import { HashAlgorithm } from '../../src/gen/ringfence/v1/suite_pb.js';
import { Availability } from '../../src/gen/ringfence/v1/status_service_pb.js';
import { blake2bVectors } from '../vectors/load.js';
import { currentKernel, suiteExpectedAvailable } from '../support/kernel-matrix.js';
import { TestDaemon } from '../support/daemon.js';
import { failure } from '../support/failure.js';
import { fdCount } from '../support/raw-grpc.js';
import { sleep, waitFor } from '../support/wait.js';

const AEADS = ['aes-256-gcm', 'chacha20-poly1305', 'aes-256-ccm', 'aes-256-ctr-hmac-sha256'].filter(suiteExpectedAvailable);
const HEADER = 36;

/** node:crypto's opening of a ringfence envelope made with known key material. */
function nodeOpen(suite: string, key: Buffer, ct: Buffer, aad: Buffer): Buffer {
  const header = ct.subarray(0, HEADER);
  const nonce = ct.subarray(24, HEADER);
  const fullAad = Buffer.concat([header, aad]);
  if (suite === 'aes-256-ctr-hmac-sha256') {
    const body = ct.subarray(HEADER, ct.length - 32);
    const al = Buffer.alloc(8);
    al.writeBigUInt64BE(BigInt(fullAad.length) * 8n);
    const tag = createHmac('sha256', key.subarray(32)).update(Buffer.concat([fullAad, nonce, body, al])).digest();
    expect(tag.equals(ct.subarray(ct.length - 32))).toBe(true);
    const d = createDecipheriv('aes-256-ctr', key.subarray(0, 32), Buffer.concat([nonce, Buffer.alloc(4)]));
    return Buffer.concat([d.update(body), d.final()]);
  }
  const body = ct.subarray(HEADER, ct.length - 16);
  const name = suite === 'aes-256-gcm' ? 'aes-256-gcm' : suite === 'aes-256-ccm' ? 'aes-256-ccm' : 'chacha20-poly1305';
  const d = createDecipheriv(name as 'aes-256-gcm', key, nonce, { authTagLength: 16 } as never);
  d.setAuthTag(ct.subarray(ct.length - 16));
  d.setAAD(fullAad, { plaintextLength: body.length } as never);
  return Buffer.concat([d.update(body), d.final()]);
}

/** node:crypto's sealing of an envelope under a header the daemon made (to check the other direction). */
function nodeSeal(suite: string, key: Buffer, header: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const nonce = header.subarray(24, HEADER);
  if (suite === 'aes-256-ctr-hmac-sha256') {
    // Encrypt-then-MAC as nodeOpen checks it: AES-256-CTR from counter 0, then HMAC-SHA256 over
    // header || AAD, nonce, ciphertext and the bit length of header || AAD.
    const c = createCipheriv('aes-256-ctr', key.subarray(0, 32), Buffer.concat([nonce, Buffer.alloc(4)]));
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    const fullAad = Buffer.concat([header, aad]);
    const al = Buffer.alloc(8);
    al.writeBigUInt64BE(BigInt(fullAad.length) * 8n);
    const tag = createHmac('sha256', key.subarray(32)).update(Buffer.concat([fullAad, nonce, body, al])).digest();
    return Buffer.concat([header, body, tag]);
  }
  const name = suite === 'aes-256-gcm' ? 'aes-256-gcm' : suite === 'aes-256-ccm' ? 'aes-256-ccm' : 'chacha20-poly1305';
  const c = createCipheriv(name as 'aes-256-gcm', key, nonce, { authTagLength: 16 } as never);
  c.setAAD(Buffer.concat([header, aad]), { plaintextLength: plaintext.length } as never);
  return Buffer.concat([header, c.update(plaintext), c.final(), c.getAuthTag()]);
}

describe('CryptoService end to end', () => {
  let daemon: TestDaemon;
  let client: RingfenceClient;
  const material = new Map<string, Buffer>();
  const secretPayload = Buffer.from('ringfence-known-payload-7f3a9c1e5b2d4f60', 'utf8');

  beforeAll(async () => {
    daemon = await TestDaemon.start();
    client = new RingfenceClient({ socketPath: daemon.socket });
    for (const suite of AEADS) {
      const key = randomBytes(suite === 'aes-256-ctr-hmac-sha256' ? 64 : 32);
      material.set(suite, Buffer.from(key));
      await client.importKey(`imp-${suite}`, key, { suite: suite as never });
    }
    for (const [suite, bytes] of [['hmac-sha256', 32], ['hmac-sha384', 48], ['hmac-sha512', 64]] as const) {
      const key = randomBytes(bytes);
      material.set(suite, Buffer.from(key));
      await client.importKey(`imp-${suite}`, key, { suite });
    }
    await client.createKey('gen');
  });
  afterAll(async () => {
    await client?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it.each(AEADS)('%s: node:crypto opens what the daemon sealed, and the daemon opens what node sealed', async (suite) => {
    const key = material.get(suite)!;
    for (const len of [0, 1, 15, 16, 17, 4096, 70_000]) {
      // Never randomBytes(0): its null data pointer makes node's CCM skip encryption.
      const pt = len ? randomBytes(len) : Buffer.alloc(0);
      const aad = len % 7 ? randomBytes(len % 7) : Buffer.alloc(0);
      const res = await client.encrypt(`imp-${suite}`, pt, { associatedData: aad });
      const ct = Buffer.from(res.ciphertext);
      expect(ct.length).toBe(HEADER + len + (suite === 'aes-256-ctr-hmac-sha256' ? 32 : 16));
      expect(nodeOpen(suite, key, ct, aad).equals(pt)).toBe(true);
      // Under the same header (and so nonce) node's seal of the same plaintext is byte for byte the daemon's...
      expect(nodeSeal(suite, key, ct.subarray(0, HEADER), aad, pt).equals(ct)).toBe(true);
      // ...and the daemon opens node's seal of another plaintext (a test may reuse a nonce).
      const other = Buffer.from(pt.map((b) => b ^ 0x5a));
      const mine = nodeSeal(suite, key, ct.subarray(0, HEADER), aad, other);
      expect(Buffer.from((await client.decrypt(mine, { associatedData: aad })).plaintext).equals(other)).toBe(true);
    }
  });

  it('MACs match node:crypto HMAC and verify; wrong MACs are valid=false', async () => {
    for (const [suite, alg] of [['hmac-sha256', 'sha256'], ['hmac-sha384', 'sha384'], ['hmac-sha512', 'sha512']] as const) {
      const data = randomBytes(1000);
      const res = await client.computeMac(`imp-${suite}`, data);
      const expected = createHmac(alg, material.get(suite)!).update(data).digest();
      expect(Buffer.from(res.mac).equals(expected)).toBe(true);
      expect((await client.verifyMac(`imp-${suite}`, data, expected)).valid).toBe(true);
      const bad = Buffer.from(expected);
      bad[0]! ^= 1;
      expect((await client.verifyMac(`imp-${suite}`, data, bad)).valid).toBe(false);
      expect((await client.verifyMac(`imp-${suite}`, data, expected.subarray(0, 16))).valid).toBe(false);
    }
  });

  it('hashes match node:crypto or, for BLAKE2b-256, CPython-generated vectors; restricted algorithms say why', async () => {
    const data = randomBytes(5000);
    for (const [alg, node] of [['sha256', 'sha256'], ['sha384', 'sha384'], ['sha512', 'sha512'], ['sha3-256', 'sha3-256'], ['sha3-512', 'sha3-512'], ['blake2b-512', 'blake2b512']] as const) {
      if (!suiteExpectedAvailable(alg)) {
        const err = await failure(client.hash(data, alg));
        expect(isFailedPrecondition(err)).toBe(true);
        expect(ErrorReason[err.reason]).toBe('SUITE_RESTRICTED_BY_KERNEL');
        expect(err.metadata).toMatchObject({ suite: alg, kernel_algorithm: alg });
        expect(err.metadata.allowed!.split(',')).toEqual(expect.arrayContaining(['sha256', 'sha384', 'sha512']));
        continue;
      }
      expect(Buffer.from((await client.hash(data, alg)).digest).equals(createHash(node).update(data).digest())).toBe(true);
    }
    if (suiteExpectedAvailable('blake2b-256')) {
      const v = blake2bVectors(256).find((x) => x.msg.length > 0)!;
      expect(Buffer.from((await client.hash(v.msg, 'blake2b-256')).digest).equals(v.md)).toBe(true);
    }
    // Streaming hash of 5 MiB in odd-sized pieces.
    const big = randomBytes(5 * 1024 * 1024 + 13);
    async function* pieces() {
      for (let i = 0; i < big.length; i += 333_333) yield big.subarray(i, i + 333_333);
    }
    const streamed = await client.hashStream(pieces(), 'sha512');
    expect(streamed.dataBytes).toBe(BigInt(big.length));
    expect(Buffer.from(streamed.digest).equals(createHash('sha512').update(big).digest())).toBe(true);
    expect((await client.hash(new Uint8Array(0))).algorithm).toBe(HashAlgorithm.SHA256);
  });

  it('hash streams that idle hold sockets of their own: other callers\' hashes still answer', async () => {
    // Twelve streams, more than the 8 operation sockets a transform pools, each sends a piece and
    // then idles. Before, they held the pool's sha256 sockets and every Hash of every client waited.
    const idler = new RingfenceClient({ socketPath: daemon.socket });
    const before = fdCount(daemon.pid!);
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    const piece = randomBytes(1000);
    const held = Array.from({ length: 12 }, () =>
      idler.hashStream((async function* () {
        yield piece;
        await gate;
        yield piece;
      })()),
    );
    try {
      // The daemon holds them now: twelve kernel sockets (grpc-js shares one connection between
      // clients of the same socket). The pool would have given them no more than eight.
      const during = await waitFor(() => fdCount(daemon.pid!), (n) => n >= before + 12, 30_000);
      expect(during).toBeGreaterThanOrEqual(before + 12);
      const data = randomBytes(3000);
      const answer = await Promise.race([client.hash(data), sleep(20_000).then(() => 'stalled')]);
      expect(answer === 'stalled' ? answer : Buffer.from((answer as { digest: Uint8Array }).digest)).toEqual(createHash('sha256').update(data).digest());
    } finally {
      openGate();
    }
    const expected = createHash('sha256').update(piece).update(piece).digest();
    for (const r of await Promise.all(held)) expect(Buffer.from(r.digest)).toEqual(expected);
    await idler.close();
    // Their sockets are closed with them.
    expect(await waitFor(() => fdCount(daemon.pid!), (n) => n <= before, 10_000)).toBeLessThanOrEqual(before);
  });

  it('ReEncrypt, GenerateDataKey and GenerateRandom', async () => {
    const src = await client.encrypt('gen', secretPayload, { associatedData: 'a' });
    await client.rotateKey('gen');
    const re = await client.reEncrypt(src.ciphertext, { associatedData: 'a' });
    expect([re.sourceKeyVersion, re.keyVersion]).toEqual([1, 2]);
    expect(Buffer.from((await client.decrypt(re.ciphertext, { associatedData: 'a' })).plaintext).equals(secretPayload)).toBe(true);
    const moved = await client.reEncrypt(src.ciphertext, { associatedData: 'a', destinationKeyName: `imp-${AEADS[0]}`, destinationAssociatedData: 'b' });
    expect(moved.keyName).toBe(`imp-${AEADS[0]}`);
    expect(nodeOpen(AEADS[0]!, material.get(AEADS[0]!)!, Buffer.from(moved.ciphertext), Buffer.from('b')).equals(secretPayload)).toBe(true);

    const dk = await client.generateDataKey('gen', { lengthBytes: 32, associatedData: 'dk' });
    expect(dk.plaintext).toHaveLength(32);
    expect(Buffer.from((await client.decrypt(dk.ciphertext, { associatedData: 'dk' })).plaintext).equals(Buffer.from(dk.plaintext))).toBe(true);
    const hidden = await client.generateDataKey('gen', { omitPlaintext: true });
    expect(hidden.plaintext).toHaveLength(0);
    expect((await client.decrypt(hidden.ciphertext)).plaintext).toHaveLength(32);

    const r1 = await client.generateRandom(64);
    const r2 = await client.generateRandom(64);
    expect(r1.data).toHaveLength(64);
    expect(Buffer.from(r1.data).equals(Buffer.from(r2.data))).toBe(false);
    expect(isInvalidArgument(await failure(client.generateRandom(0)))).toBe(true);
  });

  it('batches answer per item; sessions pipeline thousands of operations', async () => {
    const enc = await client.batchEncrypt([{ keyName: 'gen', plaintext: Buffer.from('a') }, { keyName: 'missing', plaintext: Buffer.from('b') }, { keyName: `imp-hmac-sha256`, plaintext: Buffer.from('c') }]);
    expect(enc.results.map((r) => r.result.case)).toEqual(['response', 'error', 'error']);
    expect(ErrorReason[(enc.results[1]!.result.value as { reason: ErrorReason }).reason]).toBe('KEY_NOT_FOUND');
    expect(ErrorReason[(enc.results[2]!.result.value as { reason: ErrorReason }).reason]).toBe('KEY_PURPOSE_MISMATCH');
    const ok = enc.results[0]!.result.value as { ciphertext: Uint8Array };
    const dec = await client.batchDecrypt([{ ciphertext: ok.ciphertext }, { ciphertext: Buffer.from('garbage') }]);
    expect(dec.results.map((r) => r.result.case)).toEqual(['response', 'error']);
    const macs = await client.batchComputeMac([{ keyName: 'imp-hmac-sha256', data: Buffer.from('x') }]);
    expect(Buffer.from((macs.results[0]!.result.value as { mac: Uint8Array }).mac).equals(createHmac('sha256', material.get('hmac-sha256')!).update('x').digest())).toBe(true);
    const tooMany = await failure(client.batchEncrypt(Array.from({ length: 1001 }, () => ({ keyName: 'gen', plaintext: Buffer.from('x') }))));
    expect(isResourceExhausted(tooMany) && ErrorReason[tooMany.reason] === 'BATCH_TOO_LARGE').toBe(true);

    const session = client.session({ maxInFlight: 128 });
    const inputs = Array.from({ length: 1000 }, (_, i) => Buffer.from(`item-${i}`));
    // All 2000 operations are issued at once; under qemu TCG the daemon does 20-60/s, so the per-call
    // deadline (which starts when the call is made, queued or not) must cover the whole run.
    const slow = { timeoutMs: 600_000 };
    const started = Date.now();
    const cts = await Promise.all(inputs.map((p) => session.encrypt('gen', p, slow)));
    const pts = await Promise.all(cts.map((c) => session.decrypt(c.ciphertext, slow)));
    console.log(`session: 2000 operations in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(pts.every((p, i) => Buffer.from(p.plaintext).equals(inputs[i]!))).toBe(true);
    expect(new Set(cts.map((c) => Buffer.from(c.ciphertext).toString('hex'))).size).toBe(1000); // fresh nonces
    const bad = await failure(session.encrypt('missing', 'x'));
    expect(isNotFound(bad)).toBe(true);
    expect((await session.hash('abc', 'sha256')).digest).toHaveLength(32); // the stream survived the error
    await session.close();
  });

  it('refuses bad requests with codes that mean what they say', async () => {
    const big = await failure(client.encrypt('gen', Buffer.alloc(1024 * 1024 + 1)));
    expect(isResourceExhausted(big) && ErrorReason[big.reason] === 'PAYLOAD_TOO_LARGE').toBe(true);
    expect(big.message).toContain('plaintext is 1048577 bytes; the limit is 1048576 (encrypt larger data with EncryptStream)');
    const bigAad = await failure(client.encrypt('gen', 'x', { associatedData: Buffer.alloc(65 * 1024) }));
    expect(ErrorReason[bigAad.reason]).toBe('PAYLOAD_TOO_LARGE');
    expect(bigAad.message).toContain('(associated data has this limit in every RPC, streams included: shorten it)');
    // No streaming MAC exists: the advice is not "use the streaming RPCs".
    const bigMac = await failure(client.computeMac('imp-hmac-sha256', Buffer.alloc(1024 * 1024 + 1)));
    expect(ErrorReason[bigMac.reason]).toBe('PAYLOAD_TOO_LARGE');
    expect(bigMac.message).toContain('(there is no streaming MAC: MAC a HashStream digest of larger data)');
    expect(ErrorReason[(await failure(client.encrypt('imp-hmac-sha256', 'x'))).reason]).toBe('KEY_PURPOSE_MISMATCH');
    expect(ErrorReason[(await failure(client.computeMac('gen', 'x'))).reason]).toBe('KEY_PURPOSE_MISMATCH');
    expect(ErrorReason[(await failure(client.decrypt(Buffer.from('not a ciphertext at all, really')))).reason]).toBe('CIPHERTEXT_MALFORMED');
    expect(ErrorReason[(await failure(client.encrypt('', 'x'))).reason]).toBe('INVALID_FIELD');
    const streamCt = Buffer.concat([Buffer.from('RF'), Buffer.from([2]), randomBytes(60)]);
    expect(ErrorReason[(await failure(client.decrypt(streamCt))).reason]).toBe('CIPHERTEXT_MALFORMED');
  });

  it('every flipped byte of a ciphertext fails Decrypt (property)', async () => {
    const aad = Buffer.from('ctx');
    const { ciphertext } = await client.encrypt('gen', secretPayload, { associatedData: aad });
    const ct = Buffer.from(ciphertext);
    const session = client.session();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: ct.length - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, mask) => {
        const bad = Buffer.from(ct);
        bad[pos]! ^= mask;
        const err = await failure(session.decrypt(bad, { associatedData: aad }));
        // Header bytes may name another key or version (NOT_FOUND); everything else fails authentication or parsing.
        expect(isInvalidArgument(err) || isNotFound(err)).toBe(true);
      }),
      { numRuns: 300 },
    );
    await session.close();
    expect(Buffer.from((await client.decrypt(ct, { associatedData: aad })).plaintext).equals(secretPayload)).toBe(true);
  });

  it('GetStatus says what the kernel allows the daemon', async () => {
    const s = await client.getStatus();
    expect(s.defaultAeadSuite).toBe(currentKernel() === 'lts' ? Suite.AES_256_GCM : Suite.AES_256_CCM);
    expect(s.afAlgRestricted).toBe(currentKernel() === 'restricted');
    const gcm = s.suites.find((x) => x.suite === Suite.AES_256_GCM)!;
    expect(gcm.availability).toBe(currentKernel() === 'lts' ? Availability.AVAILABLE : Availability.RESTRICTED);
    expect(s.keyCount).toBeGreaterThan(0);
    expect(s.limits!.maxPayloadBytes).toBe(1024 * 1024);
  });

  it('known key material and payloads never appear in logs or state files', async () => {
    const needles: Buffer[] = [secretPayload, ...material.values()];
    const haystacks = [daemon.output];
    for (const f of readdirSync(daemon.stateDir)) haystacks.push(readFileSync(join(daemon.stateDir, f), 'latin1'));
    expect(daemon.auditLines().length).toBeGreaterThan(50);
    for (const needle of needles) {
      for (const form of [needle.toString('hex'), needle.toString('base64'), needle.toString('base64url'), needle.toString('latin1')]) {
        for (const h of haystacks) expect(h.includes(form)).toBe(false);
      }
    }
  });
});
