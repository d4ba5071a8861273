/**
 * The refusal budget of the audit trail (review by helper-150: one uid without access had the
 * daemon write 38,000 PERMISSION_DENIED lines a second). Every refusal is accounted for: written,
 * or counted in a `suppressed` line; successes are always written.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditEntry } from './audit.js';
import { PER_SECOND, refusalBudget } from './audit-refusals.js';

afterEach(() => {
  vi.useRealTimers();
});

const entry = (uid: number | undefined, outcome: string, key = 'k', pid = 1): AuditEntry => ({
  rpc: 'CryptoService/Session',
  key,
  bytesIn: 10,
  bytesOut: 0,
  outcome,
  reason: outcome === 'OK' ? undefined : 'PERMISSION_DENIED',
  durationMs: 0.5,
  principal: uid === undefined ? undefined : { uid, gid: uid, pid },
});

/** Refusals a list of lines accounts for: one per line, or its `suppressed` count. */
const accounted = (lines: AuditEntry[]) => lines.filter((l) => l.outcome !== 'OK').reduce((n, l) => n + (l.suppressed ?? 1), 0);

describe('refusalBudget', () => {
  it(`writes ${PER_SECOND} refusals of a caller a second, then one line per kind with the count when the second is over`, () => {
    vi.useFakeTimers({ now: 0 });
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e));
    for (let i = 0; i < 1000; i++) b.audit(entry(1000, 'PERMISSION_DENIED', i % 2 ? 'a' : 'b', i));
    expect(lines).toHaveLength(PER_SECOND);
    vi.advanceTimersByTime(1000);
    expect(lines).toHaveLength(PER_SECOND + 2);
    const summaries = lines.slice(PER_SECOND);
    expect(summaries.map((l) => [l.key, l.suppressed])).toEqual([
      ['b', 450],
      ['a', 450],
    ]);
    expect(summaries[0]).toMatchObject({ rpc: 'CryptoService/Session', outcome: 'PERMISSION_DENIED', reason: 'PERMISSION_DENIED', bytesIn: 4500, durationMs: 225, principal: { uid: 1000 } });
    expect(accounted(lines)).toBe(1000);
  });

  it('always writes successes, also past the budget', () => {
    vi.useFakeTimers({ now: 0 });
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e));
    for (let i = 0; i < 2 * PER_SECOND; i++) b.audit(entry(1000, 'PERMISSION_DENIED'));
    for (let i = 0; i < 500; i++) b.audit(entry(1000, 'OK'));
    expect(lines.filter((l) => l.outcome === 'OK')).toHaveLength(500);
  });

  it("gives each uid its own budget: one caller's flood leaves another's refusals written", () => {
    vi.useFakeTimers({ now: 0 });
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e));
    for (let i = 0; i < 10 * PER_SECOND; i++) b.audit(entry(1000, 'PERMISSION_DENIED'));
    for (let i = 0; i < 5; i++) b.audit(entry(2000, 'NOT_FOUND'));
    for (let i = 0; i < 5; i++) b.audit(entry(undefined, 'UNAUTHENTICATED'));
    expect(lines.filter((l) => l.principal?.uid === 2000)).toHaveLength(5);
    expect(lines.filter((l) => l.principal === undefined)).toHaveLength(5);
  });

  it('gives a caller a new budget each second', () => {
    let t = 0;
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e), () => t);
    for (let i = 0; i < 2 * PER_SECOND; i++) b.audit(entry(1000, 'PERMISSION_DENIED'));
    t = 1000;
    for (let i = 0; i < PER_SECOND; i++) b.audit(entry(1000, 'PERMISSION_DENIED'));
    expect(lines).toHaveLength(2 * PER_SECOND);
    b.flush();
    expect(accounted(lines)).toBe(3 * PER_SECOND);
  });

  it('flush() writes what was counted (the daemon calls it as it stops)', () => {
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e), () => 0);
    for (let i = 0; i < PER_SECOND + 7; i++) b.audit(entry(1000, 'PERMISSION_DENIED'));
    b.flush();
    expect(lines.at(-1)).toMatchObject({ suppressed: 7 });
    b.flush();
    expect(lines).toHaveLength(PER_SECOND + 1);
  });
});

describe('refusalBudget against a caller that changes what it names', () => {
  it(`makes at most ${PER_SECOND} groups of a caller a second: past that, its refusals are counted without their key`, () => {
    vi.useFakeTimers({ now: 0 });
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e));
    // A new key name per refusal made a group, and a line, each (review by helper-154).
    for (let i = 0; i < 5000; i++) b.audit(entry(1000, 'PERMISSION_DENIED', `k${i}`));
    vi.advanceTimersByTime(1000);
    expect(lines.length).toBeLessThanOrEqual(2 * PER_SECOND + 1);
    expect(lines.at(-1)).toMatchObject({ manyKeys: true, suppressed: 5000 - 2 * PER_SECOND });
    expect(lines.at(-1)!.key).toBeUndefined();
    expect(accounted(lines)).toBe(5000);
  });

  it('writes every line as it comes once flushed at stop (a group made then would be lost at exit)', () => {
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e), () => 0);
    b.flush();
    for (let i = 0; i < 3 * PER_SECOND; i++) b.audit(entry(1000, 'CANCELLED'));
    expect(lines).toHaveLength(3 * PER_SECOND);
  });
});

describe('refusalBudget and keyId', () => {
  it("counts refusals of different ciphertext keys (keyId, no key name) apart: a group's line names the key each of its refusals was about", () => {
    vi.useFakeTimers({ now: 0 });
    const lines: AuditEntry[] = [];
    const b = refusalBudget((e) => lines.push(e));
    const byId = (keyId: string): AuditEntry => ({ ...entry(1000, 'NOT_FOUND'), rpc: 'CryptoService/Decrypt', key: undefined, keyId, reason: 'KEY_NOT_FOUND' });
    for (let i = 0; i < PER_SECOND; i++) b.audit(byId('00'));
    b.audit(byId('aa'));
    b.audit(byId('bb'));
    b.audit(byId('bb'));
    vi.advanceTimersByTime(1000);
    expect(lines.slice(PER_SECOND).map((l) => [l.keyId, l.suppressed])).toEqual([
      ['aa', 1],
      ['bb', 2],
    ]);
  });
});
