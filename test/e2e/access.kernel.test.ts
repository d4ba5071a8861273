/**
 * Access control end to end: a root daemon with a policy, clients as other uids (separate
 * processes, so SO_PEERCRED is theirs). A uid outside the policy is denied every RPC; a permitted
 * uid gets exactly what it was granted (batch, stream and session items checked one by one);
 * SIGHUP reloads, an invalid file keeps the policy; audit lines carry the principal.
 */
import { chmodSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RingfenceClient } from '../../src/client/sdk/index.js';
import { TestDaemon } from '../support/daemon.js';
import { NOBODY, projectModule, runTsJson } from '../support/run-ts.js';

const OUTSIDER = 65533;
const GROUP = 64747;

const POLICY = {
  rules: [
    { id: 'nobody-app', principals: [`uid:${NOBODY}`], operations: ['encrypt', 'decrypt', 'read'], keys: ['app-*'] },
    { id: 'nobody-hash', principals: [`uid:${NOBODY}`], operations: ['hash'] },
    // reencrypt on a key it may not decrypt: it may move ciphertexts to it, not out of it.
    { id: 'nobody-move', principals: [`uid:${NOBODY}`], operations: ['reencrypt'], keys: ['app-*', 'secret'] },
    // A group no account is in (/etc/group is the host's, read-only in the guest): only a process
    // holding it as a supplementary group gets this.
    { id: 'group-random', principals: [`gid:${GROUP}`], operations: ['random'] },
  ],
};

type Outcome = string; // "OK" or the gRPC status name
type Results = Record<string, Outcome | Outcome[]> & { listed?: string[]; pagedByOne?: string[]; pageTokens?: string[]; decryptDenial?: string };

/** Every RPC (and batch/session items) tried by a client process; each outcome by name. */
function tryEverything(socket: string, inputs: { appCt: string; secretCt: string; secretStream: string; mac: string }, uid: number): Results {
  const code = `
    import { RingfenceClient } from ${projectModule('src/client/sdk/index.ts')};
    import { Readable, Writable } from 'node:stream';
    import { pipeline } from 'node:stream/promises';
    const c = new RingfenceClient({ socketPath: ${JSON.stringify(socket)} });
    const b = (s) => Buffer.from(s, 'base64');
    const inp = ${JSON.stringify(inputs)};
    const out = {};
    const outcome = (e) => e?.codeName ?? (e?.code !== undefined ? 'CODE_' + e.code : 'ERROR ' + e);
    const item = (r) => (r.result.case === 'error' ? ['OK','CANCELLED','UNKNOWN','INVALID_ARGUMENT','DEADLINE_EXCEEDED','NOT_FOUND','ALREADY_EXISTS','PERMISSION_DENIED'][r.result.value.code] ?? String(r.result.value.code) : 'OK');
    const t = async (name, f) => { try { await f(); out[name] = 'OK'; } catch (e) { out[name] = outcome(e); } };
    const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
    await t('createKey', () => c.createKey('app-new'));
    await t('importKey', () => c.importKey('app-imp', Buffer.alloc(32, 7)));
    await t('getKey app', () => c.getKey('app-a'));
    await t('getKey secret', () => c.getKey('secret'));
    await t('listKeys', async () => { out.listed = (await c.listKeys()).keys.map((k) => k.name); });
    await t('listKeys by one', async () => {
      // Page tokens too must name only keys the caller may read.
      const names = [], tokens = [];
      let token = '';
      do {
        const page = await c.listKeys({ pageSize: 1, pageToken: token });
        names.push(...page.keys.map((k) => k.name));
        token = page.nextPageToken;
        if (token) tokens.push(token);
      } while (token);
      out.pagedByOne = names;
      out.pageTokens = tokens;
    });
    await t('rotateKey', () => c.rotateKey('app-a'));
    await t('updateKey', () => c.updateKey('app-a', { deletionProtection: true }));
    await t('disableKey', () => c.disableKey('app-a'));
    await t('enableKey', () => c.enableKey('app-a'));
    await t('scheduleKeyDeletion', () => c.scheduleKeyDeletion('app-a'));
    await t('cancelKeyDeletion', () => c.cancelKeyDeletion('app-a'));
    await t('encrypt app', () => c.encrypt('app-a', 'x'));
    await t('encrypt secret', () => c.encrypt('secret', 'x'));
    await t('decrypt app', () => c.decrypt(b(inp.appCt)));
    await t('decrypt secret', () => c.decrypt(b(inp.secretCt)));
    out.decryptDenial = await c.decrypt(b(inp.secretCt)).then(() => 'OK', (e) => e.message);
    await t('reEncrypt', () => c.reEncrypt(b(inp.appCt)));
    await t('reEncrypt app to secret', () => c.reEncrypt(b(inp.appCt), { destinationKeyName: 'secret' }));
    // Else, with decrypt on app-a, a way to read secret's ciphertexts.
    await t('reEncrypt secret to app', () => c.reEncrypt(b(inp.secretCt), { destinationKeyName: 'app-a' }));
    await t('generateDataKey', () => c.generateDataKey('app-a'));
    await t('computeMac', () => c.computeMac('app-mac', 'x'));
    await t('verifyMac', () => c.verifyMac('app-mac', 'x', b(inp.mac)));
    await t('hash', () => c.hash('x'));
    await t('hashStream', () => c.hashStream(Readable.from([Buffer.from('x')])));
    await t('generateRandom', () => c.generateRandom(8));
    await t('getStatus', () => c.getStatus());
    try { out.batchEncrypt = (await c.batchEncrypt([{ keyName: 'app-a', plaintext: Buffer.from('a') }, { keyName: 'secret', plaintext: Buffer.from('b') }])).results.map(item); } catch (e) { out.batchEncrypt = outcome(e); }
    try { out.batchDecrypt = (await c.batchDecrypt([{ ciphertext: b(inp.appCt) }, { ciphertext: b(inp.secretCt) }])).results.map(item); } catch (e) { out.batchDecrypt = outcome(e); }
    try { out.batchComputeMac = (await c.batchComputeMac([{ keyName: 'app-mac', data: Buffer.from('a') }])).results.map(item); } catch (e) { out.batchComputeMac = outcome(e); }
    await t('encryptStream app', () => pipeline(Readable.from([Buffer.from('s')]), c.encryptStream('app-a'), sink()));
    await t('encryptStream secret', () => pipeline(Readable.from([Buffer.from('s')]), c.encryptStream('secret'), sink()));
    await t('decryptStream secret', () => pipeline(Readable.from([b(inp.secretStream)]), c.decryptStream(), sink()));
    const s = c.session();
    const sess = [];
    for (const f of [() => s.encrypt('app-a', 'x'), () => s.encrypt('secret', 'x'), () => s.generateRandom(4), () => s.hash('x')]) {
      try { await f(); sess.push('OK'); } catch (e) { sess.push(outcome(e)); }
    }
    out.session = sess;
    await s.close().catch(() => {});
    await c.close();
    console.log(JSON.stringify(out));
  `;
  return runTsJson<Results>(code, { uid, gid: uid });
}

const D = 'PERMISSION_DENIED';

describe('access control by peer credentials', () => {
  let daemon: TestDaemon;
  let root: RingfenceClient;
  let inputs: { appCt: string; secretCt: string; secretStream: string; mac: string };
  let policyPath: string;

  beforeAll(async () => {
    // The directory must let other uids reach the socket; the socket mode lets them connect.
    const dir = mkdtempSync(join(tmpdir(), 'rf-access-'));
    chmodSync(dir, 0o755);
    policyPath = join(dir, 'policy.json');
    writeFileSync(policyPath, JSON.stringify(POLICY));
    daemon = await TestDaemon.start({ dir, config: { socketMode: '0666', policy: policyPath } });
    root = new RingfenceClient({ socketPath: daemon.socket });
    await root.createKey('app-a');
    await root.createKey('aaa-hidden'); // listed before app-a: a page of one would end on it
    await root.createKey('secret');
    await root.createKey('app-mac', { purpose: 'mac' });
    const parts: Buffer[] = [];
    await pipeline(Readable.from([Buffer.from('stream')]), root.encryptStream('secret'), new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) }));
    inputs = {
      appCt: Buffer.from((await root.encrypt('app-a', 'a')).ciphertext).toString('base64'),
      secretCt: Buffer.from((await root.encrypt('secret', 's')).ciphertext).toString('base64'),
      secretStream: Buffer.concat(parts).toString('base64'),
      mac: Buffer.from((await root.computeMac('app-mac', 'x')).mac).toString('base64'),
    };
  }, 120_000);
  afterAll(async () => {
    await root?.close();
    expect(await daemon?.stop()).toBe(0);
  });

  it('a uid outside the policy is denied every RPC (status excepted) and every item', () => {
    const r = tryEverything(daemon.socket, inputs, OUTSIDER);
    const { getStatus, listed, batchEncrypt, batchDecrypt, batchComputeMac, session, decryptDenial, ...rest } = r;
    expect(getStatus).toBe('OK');
    // A ciphertext names its key by id only: the denial does not tell the caller the key's name.
    expect(decryptDenial).toMatch(/does not allow uid \d+ to decrypt with the key this ciphertext names/);
    expect(decryptDenial).not.toContain('secret');
    expect(listed).toBeUndefined();
    for (const [name, outcome] of Object.entries(rest)) expect([name, outcome]).toEqual([name, D]);
    expect(batchEncrypt).toEqual([D, D]);
    expect(batchDecrypt).toEqual([D, D]);
    expect(batchComputeMac).toEqual([D]);
    expect(session).toEqual([D, D, D, D]);
  }, 120_000);

  it('a permitted uid gets exactly what it was granted', () => {
    const r = tryEverything(daemon.socket, inputs, NOBODY);
    expect(r).toEqual({
      createKey: D,
      importKey: D,
      'getKey app': 'OK',
      'getKey secret': D,
      listKeys: 'OK',
      listed: ['app-a', 'app-mac'],
      'listKeys by one': 'OK',
      pagedByOne: ['app-a', 'app-mac'],
      pageTokens: [`k1.${Buffer.from('app-a').toString('base64url')}`],
      rotateKey: D,
      updateKey: D,
      disableKey: D,
      enableKey: D,
      scheduleKeyDeletion: D,
      cancelKeyDeletion: D,
      'encrypt app': 'OK',
      'encrypt secret': D,
      'decrypt app': 'OK',
      'decrypt secret': D,
      decryptDenial: expect.not.stringContaining('secret'),
      reEncrypt: 'OK',
      'reEncrypt app to secret': 'OK',
      'reEncrypt secret to app': D,
      generateDataKey: D,
      computeMac: D,
      verifyMac: D,
      hash: 'OK',
      hashStream: 'OK',
      generateRandom: D,
      getStatus: 'OK',
      batchEncrypt: ['OK', D],
      batchDecrypt: ['OK', D],
      batchComputeMac: [D],
      'encryptStream app': 'OK',
      'encryptStream secret': D,
      'decryptStream secret': D,
      session: ['OK', D, D, 'OK'],
    });
  }, 120_000);

  it('audit lines carry the principal, denials included', async () => {
    // The clients ran with spawnSync: the daemon's output may still be in the pipe, unread.
    const find = () => daemon.auditLines().find((l) => l.rpc === 'CryptoService/Encrypt' && l.key === 'secret' && l.outcome === D && (l.principal as { uid?: number } | undefined)?.uid === NOBODY);
    await expect.poll(find, { timeout: 20_000 }).toBeDefined();
    const lines = daemon.auditLines();
    expect(find()?.principal).toEqual({ uid: NOBODY, gid: NOBODY, pid: expect.any(Number), groups: [], exe: realpathSync(process.execPath) });
    const rootLine = lines.find((l) => l.rpc === 'KeyService/CreateKey' && l.outcome === 'OK');
    expect(rootLine?.principal).toMatchObject({ uid: 0, gid: 0, pid: process.pid });
    // Batch items are audited one by one, denials included; a denied decrypt names its key there.
    const batchDenied = () => daemon.auditLines().find((l) => l.rpc === 'Batch/encrypt' && l.key === 'secret' && l.outcome === D && (l.principal as { uid?: number } | undefined)?.uid === NOBODY);
    await expect.poll(batchDenied, { timeout: 20_000 }).toBeDefined();
    expect(daemon.auditLines().some((l) => l.rpc === 'Batch/encrypt' && l.key === 'app-a' && l.outcome === 'OK' && (l.principal as { uid?: number } | undefined)?.uid === NOBODY)).toBe(true);
    expect(daemon.auditLines().some((l) => l.rpc === 'CryptoService/Decrypt' && l.key === 'secret' && l.outcome === D && (l.principal as { uid?: number } | undefined)?.uid === NOBODY)).toBe(true);
    // The denial's message names operation and key, never the rule ids.
    expect(daemon.output).not.toMatch(/"message":"[^"]*nobody-app/);
  });

  it('a group counts when the calling process holds it (SO_PEERGROUPS), whatever /etc/group says', () => {
    // Root sets the groups, then becomes OUTSIDER (whom no rule names) before connecting.
    const random = (groups: number[]) => runTsJson<{ r: string }>(
      `import { RingfenceClient } from ${projectModule('src/client/sdk/index.ts')};
       process.setgroups(${JSON.stringify(groups)}); process.setgid(${OUTSIDER}); process.setuid(${OUTSIDER});
       const c = new RingfenceClient({ socketPath: ${JSON.stringify(daemon.socket)} });
       let r = 'OK'; try { await c.generateRandom(4); } catch (e) { r = e.codeName; }
       await c.close(); console.log(JSON.stringify({ r }));`,
    ).r;
    expect(random([GROUP])).toBe('OK');
    expect(random([GROUP + 1])).toBe(D);
    expect(random([])).toBe(D);
  }, 120_000);

  it('SIGHUP reloads the policy; an invalid file keeps the policy in force', async () => {
    const random = () => runTsJson<{ r: string }>(
      `import { RingfenceClient } from ${projectModule('src/client/sdk/index.ts')};
       const c = new RingfenceClient({ socketPath: ${JSON.stringify(daemon.socket)} });
       let r = 'OK'; try { await c.generateRandom(4); } catch (e) { r = e.codeName; }
       await c.close(); console.log(JSON.stringify({ r }));`,
      { uid: NOBODY },
    ).r;
    expect(random()).toBe(D);
    const loads = () => daemon.output.split('policy loaded').length;
    const before = loads();
    writeFileSync(policyPath, JSON.stringify({ rules: [...POLICY.rules, { principals: [`uid:${NOBODY}`], operations: ['random'] }] }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(loads, { timeout: 20_000 }).toBeGreaterThan(before);
    expect(random()).toBe('OK');
    writeFileSync(policyPath, '{"rules": [ { "principals": ["*"], "operations": ["encrpyt"], "keys": ["*"] } ]}');
    process.kill(daemon.pid!, 'SIGHUP');
    // The log is JSON: the quotes around the operation are escaped there.
    await expect.poll(() => daemon.output.includes('keeping the policy in force: rules[0].operations[0]: \\"encrpyt\\" is not an operation'), { timeout: 20_000 }).toBe(true);
    expect(random()).toBe('OK');
    // A name that does not resolve is no error: that principal matches nobody, with a warning.
    writeFileSync(policyPath, JSON.stringify({ rules: [...POLICY.rules, { principals: ['user:no-such-user', `uid:${NOBODY}`], operations: ['random'] }] }));
    process.kill(daemon.pid!, 'SIGHUP');
    await expect.poll(() => daemon.output.includes('rules[' + POLICY.rules.length + '].principals[0]: no user named \\"no-such-user\\" in /etc/passwd; it matches nobody'), { timeout: 20_000 }).toBe(true);
    expect(random()).toBe('OK');
  }, 180_000);
});
