// A cached kernel extraction is used only while whole (review by helper-122): a kernel.json that
// does not parse, or a vmlinuz or modules.dep gone or cut short, made every later run fail until
// someone deleted the cache by hand. Now such a tree reads as absent, so it is fetched again.
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readManifest, type PreparedKernel } from './kernels.js';

let dir: string;
let kernel: PreparedKernel;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rf-kcache-'));
  const modulesDir = path.join(dir, 'root/lib/modules');
  mkdirSync(path.join(modulesDir, '6.12.1-amd64'), { recursive: true });
  writeFileSync(path.join(modulesDir, '6.12.1-amd64/modules.dep'), 'kernel/crypto/af_alg.ko.xz:\n');
  mkdirSync(path.join(dir, 'root/boot'));
  const vmlinuz = path.join(dir, 'root/boot/vmlinuz-6.12.1-amd64');
  writeFileSync(vmlinuz, Buffer.alloc(4096, 1));
  kernel = { name: 'lts', version: '6.12.1-1', release: '6.12.1-amd64', packages: [], vmlinuz, vmlinuzBytes: 4096, modulesDir };
  writeFileSync(path.join(dir, 'kernel.json'), JSON.stringify(kernel));
  vi.spyOn(console, 'error').mockImplementation(() => {});
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  vi.restoreAllMocks();
});

describe('a cached kernel', () => {
  it('is used while whole', () => {
    expect(readManifest(dir)).toEqual(kernel);
  });

  it('whose kernel.json is empty (written, then a host reset) reads as absent, with a message, not a bare SyntaxError', () => {
    writeFileSync(path.join(dir, 'kernel.json'), '');
    expect(readManifest(dir)).toBeUndefined();
    expect(console.error).toHaveBeenCalledWith(expect.stringMatching(/kernel\.json is damaged .*fetching that kernel again/));
  });

  it('whose vmlinuz is gone or cut short reads as absent', () => {
    truncateSync(kernel.vmlinuz, 100);
    expect(readManifest(dir)).toBeUndefined();
    rmSync(kernel.vmlinuz);
    expect(readManifest(dir)).toBeUndefined();
  });

  it('whose modules.dep is gone reads as absent', () => {
    rmSync(path.join(kernel.modulesDir, kernel.release, 'modules.dep'));
    expect(readManifest(dir)).toBeUndefined();
  });

  it('from before vmlinuzBytes was recorded is used unless its vmlinuz is empty', () => {
    const { vmlinuzBytes: _, ...old } = kernel;
    writeFileSync(path.join(dir, 'kernel.json'), JSON.stringify(old));
    expect(readManifest(dir)).toEqual(old);
    truncateSync(kernel.vmlinuz, 0);
    expect(readManifest(dir)).toBeUndefined();
  });
});
