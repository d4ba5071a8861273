import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, test } from 'vitest';
import { formatBytes, formatProgress, PROGRESS_MIN_BYTES, startProgress } from './progress.js';

const MiB = 1024 * 1024;

function terminal(isTTY = true, columns = 80) {
  const writes: string[] = [];
  return { isTTY, columns, writes, write: (s: string) => writes.push(s) };
}

describe('startProgress', () => {
  test('nothing unless stderr is a terminal and the input a large file of known size', () => {
    expect(startProgress('encrypt', 100 * MiB, terminal(false))).toBeUndefined();
    expect(startProgress('encrypt', undefined, terminal())).toBeUndefined();
    expect(startProgress('encrypt', PROGRESS_MIN_BYTES - 1, terminal())).toBeUndefined();
    expect(startProgress('encrypt', PROGRESS_MIN_BYTES, terminal())).toBeDefined();
  });

  test('redraws at most every 200 ms with bytes, percentage and rate, and clears its line when done', () => {
    const t = terminal();
    let clock = 0;
    const p = startProgress('hash', 16 * MiB, t, () => clock)!;
    for (let i = 0; i < 16; i++) {
      clock += 100;
      p.add(MiB);
    }
    p.done();
    const draws = t.writes.filter((w) => w.includes('MiB'));
    expect(draws.length).toBe(8); // 1.6 s of input, one draw per 200 ms
    expect(draws[0]).toMatch(/^\r\x1b\[Khash \[=+> *\]  12%  2\.0 MiB \/ 16\.0 MiB  10\.0 MiB\/s$/);
    expect(draws.at(-1)).toContain('100%  16.0 MiB / 16.0 MiB');
    expect(t.writes.at(-1)).toBe('\r\x1b[K');
  });

  test('its counter passes the bytes through unchanged', async () => {
    const p = startProgress('encrypt', 16 * MiB, terminal())!;
    const chunks = Array.from({ length: 16 }, (_, i) => Buffer.alloc(MiB, i));
    const seen: Buffer[] = [];
    await pipeline(Readable.from(chunks), p.counter, new Writable({ write: (c, _e, cb) => (seen.push(c), cb()) }));
    p.done();
    expect(Buffer.concat(seen).equals(Buffer.concat(chunks))).toBe(true); // toEqual on 16 MiB is too slow
  });

  test('a terminal that reports 0 columns (script(1), serial consoles) gets an 80-column bar, not an empty line (found by review)', () => {
    const t = terminal(true, 0);
    let clock = 0;
    const p = startProgress('encrypt', 16 * MiB, t, () => clock)!;
    clock += 300;
    p.add(MiB);
    p.done();
    expect(t.writes[0]).toMatch(/^\r\x1b\[Kencrypt \[=*> *\]   6%  1\.0 MiB \/ 16\.0 MiB/);
  });

  test('done() on a bar never drawn writes nothing', () => {
    const t = terminal();
    startProgress('decrypt', 16 * MiB, t)!.done();
    expect(t.writes).toEqual([]);
  });
});

describe('formatProgress', () => {
  test('bar, percentage, bytes and rate, within the terminal width', () => {
    const line = formatProgress('encrypt', 512 * MiB, 1024 * MiB, 200 * MiB, 80);
    expect(line).toMatch(/^encrypt \[=+> *\]  50%  512\.0 MiB \/ 1\.0 GiB  200\.0 MiB\/s$/);
    expect(line.length).toBeLessThan(80);
    expect(formatProgress('encrypt', 1, 2, 1, 30).length).toBeLessThan(30);
  });
  test('bytes', () => {
    expect([0, 1023, 1024, 1536, 10 * MiB, 3 * 1024 * MiB].map(formatBytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '10.0 MiB', '3.0 GiB']);
  });
});
