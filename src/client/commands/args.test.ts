import { describe, expect, test } from 'vitest';
import { durationMs, formatDuration, parseChoice, parseDuration, parseHex, parseInteger, parseKeyName, UsageError } from './args.js';

describe('durations', () => {
  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['0s', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text, '--after')).toBe(ms);
  });

  test.each(['7', '1.5h', '1h30m', '-1h', '1 h', 'h', '', '1w', '1H', '01x', '9999999999999d'])('"%s" is refused as a usage error naming the option', (text) => {
    expect(() => parseDuration(text, '--rotate-every')).toThrow(UsageError);
    expect(() => parseDuration(text, '--rotate-every')).toThrow(/--rotate-every/);
  });

  test('format picks the largest unit that divides evenly', () => {
    expect([0, 1500, 90_000, 3_600_000, 86_400_000, 7 * 86_400_000, 36 * 3_600_000].map(formatDuration)).toEqual(['0s', '1500ms', '90s', '1h', '1d', '7d', '36h']);
  });

  test('google.protobuf.Duration to ms', () => {
    expect(durationMs({ seconds: 3600n, nanos: 5_000_000 })).toBe(3_600_005);
    expect(durationMs(undefined)).toBeUndefined();
  });
});

describe('integers', () => {
  test('in range', () => {
    expect(parseInteger('1', 'N', 1, 10)).toBe(1);
    expect(parseInteger('10', 'N', 1, 10)).toBe(10);
  });
  test.each(['0', '11', '-1', '+1', '1e3', '0x10', '1.0', '', ' 1', 'abc'])('"%s" is refused', (text) => {
    expect(() => parseInteger(text, 'N', 1, 10)).toThrow(UsageError);
  });
});

describe('hex', () => {
  test('either case, optional 0x', () => {
    expect(parseHex('00ffAB', '--mac')).toEqual(Buffer.from([0, 0xff, 0xab]));
    expect(parseHex('0x0102', '--mac')).toEqual(Buffer.from([1, 2]));
  });
  test.each(['', 'abc', 'zz', '0x', 'aa bb', 'aa\n'])('"%s" is refused rather than silently truncated', (text) => {
    expect(() => parseHex(text, '--mac')).toThrow(UsageError);
  });
});

describe('names', () => {
  test('key names as the daemon allows them', () => {
    expect(parseKeyName('app.key-1_x')).toBe('app.key-1_x');
    expect(parseKeyName('a'.repeat(64))).toBe('a'.repeat(64));
    for (const bad of ['', '-a', '.a', 'a b', 'a/b', 'ü', 'a'.repeat(65)]) expect(() => parseKeyName(bad)).toThrow(UsageError);
  });
  test('choices are exact and listed on error', () => {
    expect(parseChoice('mac', '--purpose', ['aead', 'mac'])).toBe('mac');
    expect(() => parseChoice('MAC', '--purpose', ['aead', 'mac'])).toThrow(/expected one of: aead, mac/);
  });
});
