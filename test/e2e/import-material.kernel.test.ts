/**
 * Imported material is held once: the same bytes imported as a second key, or as a new version of
 * the key that has them, would give two versions one random-nonce space while each counts its
 * encryptions alone. The fingerprints behind the check are HMACs in the kernel under a key made per
 * run and never persisted, so the test also checks the check after kill -9, the state file, a state
 * written by an earlier version that already holds material twice, and that deleting a key frees its
 * material. Independent truth: the state file on disk and material sealed here by node:crypto.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorReason, RingfenceClient, isInvalidArgument, isNotFound, type RingfenceError } from '../../src/client/sdk/index.js';
import { decodeKey } from '../../src/daemon/state/master-key.js';
import { TestDaemon } from '../support/daemon.js';
import { sleep } from '../support/wait.js';

interface StateFile {
  keys: { id: string; name: string; versions: Record<string, unknown>[] }[];
}

async function refusedAsReused(p: Promise<unknown>): Promise<RingfenceError> {
  const err = (await p.then(
    () => {
      throw new Error('expected the call to be refused');
    },
    (e: unknown) => e,
  )) as RingfenceError;
  expect(isInvalidArgument(err), String(err)).toBe(true);
  expect(ErrorReason[err.reason]).toBe(ErrorReason[ErrorReason.KEY_MATERIAL_INVALID]);
  expect(err.message).toMatch(/already in use by/);
  return err;
}

describe('imported key material is held once', () => {
  let daemon: TestDaemon;
  let client: RingfenceClient;
  const m = randomBytes(32);
  const statePath = () => join(daemon.stateDir, 'state.json');
  const state = () => JSON.parse(readFileSync(statePath(), 'utf8')) as StateFile;
  const warnings = () =>
    daemon.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string })
      .map((l) => l.msg);

  beforeAll(async () => {
    daemon = await TestDaemon.start({ config: { limits: { minDeletionWaitingPeriod: '2s' } } });
    client = new RingfenceClient({ socketPath: daemon.socket });
  });
  afterAll(async () => {
    await client?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it('refuses the material of another key (without naming it) and of a version of the same key', async () => {
    await client.importKey('a', Buffer.from(m));
    const err = await refusedAsReused(client.importKey('b', Buffer.from(m)));
    expect(err.message).toContain('another key in this daemon');
    expect(err.message).not.toContain('"a"');
    await expect(client.getKey('b')).rejects.toSatisfy(isNotFound);
    expect((await refusedAsReused(client.rotateKey('a', Buffer.from(m)))).message).toContain('version 1 of key "a"');
    expect((await client.getKey('a')).versions).toHaveLength(1);
    // As the MAC half of an encrypt-then-MAC key (64 bytes: cipher key || MAC key).
    await refusedAsReused(client.importKey('etm', Buffer.concat([randomBytes(32), m])));
    // Fresh material is fine, for a new key and for a rotation.
    await client.importKey('b', randomBytes(32));
    expect((await client.rotateKey('a', randomBytes(32))).versions).toHaveLength(2);
  });

  it('still refuses after kill -9, and persists nothing for it', async () => {
    await daemon.kill9();
    await daemon.restart();
    await refusedAsReused(client.importKey('c', Buffer.from(m)));
    for (const key of state().keys) {
      for (const v of key.versions) {
        // Nothing derived from the material: the wrapped blobs, a time, a count, and who made a
        // rotated version (the key caps charge it; root here).
        const { creatorUid, ...rest } = v as Record<string, unknown>;
        expect(Object.keys(rest).sort()).toEqual(['blobs', 'createTime', 'encryptionsReserved', 'version']);
        expect(creatorUid === undefined || creatorUid === 0).toBe(true);
      }
    }
  });

  it('a state that already holds material twice (an earlier version) starts, and says which keys share it', async () => {
    expect(await daemon.stop()).toBe(0);
    // Key "twin": a copy of "a" with a new id, its version 1 sealed by hand with a's version-1 material.
    const doc = state();
    const a = doc.keys.find((k) => k.name === 'a')!;
    const master = decodeKey(readFileSync(join(daemon.stateDir, 'master.key')))!;
    const id = randomBytes(16).toString('hex');
    const nonce = randomBytes(12);
    const ccm = createCipheriv('aes-256-ccm', master, nonce, { authTagLength: 16 });
    ccm.setAAD(Buffer.from(`ringfence:import:${id}:1:0`), { plaintextLength: m.length });
    const sealed = Buffer.concat([nonce, ccm.update(m), ccm.final(), ccm.getAuthTag()]);
    const twin = { ...structuredClone(a), id, name: 'twin', versions: [{ ...a.versions[0]!, blobs: [`sealed:aes-256-ccm:${sealed.toString('base64')}`] }], minDecryptionVersion: 1 };
    doc.keys.push(twin);
    doc.keys.sort((x, y) => (x.name < y.name ? -1 : 1));
    writeFileSync(statePath(), JSON.stringify(doc));

    await daemon.restart();
    expect(warnings()).toContain('key "twin" version 1 has the same material as key "a" version 1: they share one nonce space and their encryption limits do not hold; rotate one of them to new material');
    const ct = await client.encrypt('twin', 'usable');
    expect(Buffer.from((await client.decrypt(ct.ciphertext)).plaintext).toString()).toBe('usable');
  });

  it('deleting a key frees its material', async () => {
    const n = randomBytes(32);
    await client.importKey('short-lived', Buffer.from(n));
    await client.scheduleKeyDeletion('short-lived', { waitingPeriodMs: 2000 });
    await refusedAsReused(client.importKey('heir', Buffer.from(n)));
    const poll = async () => {
      for (const end = Date.now() + 30_000; Date.now() < end; await sleep(250)) {
        if (await client.getKey('short-lived').then(() => false, isNotFound)) return true;
      }
      return false;
    };
    expect(await poll(), 'the key is deleted within 30 s').toBe(true);
    expect((await client.importKey('heir', Buffer.from(n))).name).toBe('heir');
  });
});
