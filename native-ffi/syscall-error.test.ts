import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { pageSize } from './libc.js';
import { errnoName } from './syscall-error.js';

describe('errnoName', () => {
  it("gives Linux's names, also where two share a number (found by review: 11 was EWOULDBLOCK, so EAGAIN checks never matched)", () => {
    expect([2, 11, 95, 35, 126, 128].map(errnoName)).toEqual(['ENOENT', 'EAGAIN', 'EOPNOTSUPP', 'EDEADLK', 'ENOKEY', 'EKEYREVOKED']);
    expect(errnoName(4095)).toBe('E4095');
  });
});

describe('pageSize', () => {
  it('is the kernel page size getconf reports', () => {
    expect(pageSize()).toBe(Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()));
  });
});
