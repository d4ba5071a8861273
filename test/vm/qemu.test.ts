// How runQemu reads a guest's end, with a stand-in qemu-system-x86_64 first on PATH (a shell
// script printing what a guest's console would): which crashes run-in-guest.ts may retry.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import type { PreparedKernel } from "./kernels.js";
import { GuestError, runQemu } from "./qemu.js";

let dir: string;
let savedPath: string | undefined;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "rf-qemu-"));
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${savedPath}`;
  vi.spyOn(process.stdout, "write").mockImplementation(() => true); // the stand-in's console
});
afterAll(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

const kernel = { name: "lts", release: "6.12.0-test", vmlinuz: "/nonexistent" } as PreparedKernel;

/** Runs a stand-in guest whose console is `script` (sh); resolves to how runQemu ended. */
async function guest(script: string, setup: (outDir: string) => void = () => {}): Promise<{ crashedBeforeStart: boolean; message: string } | { exitCode: number; kernelFaults: string[] }> {
  writeFileSync(path.join(dir, "qemu-system-x86_64"), `#!/bin/sh\n${script}\n`);
  chmodSync(path.join(dir, "qemu-system-x86_64"), 0o755);
  const outDir = mkdtempSync(path.join(dir, "out-"));
  setup(outDir);
  try {
    const { exitCode, kernelFaults } = await runQemu({ kernel, initramfs: "/nonexistent", outDir, nonce: "n0nce", interactive: false, timeoutMs: 30_000, cpu: "max", smp: 1, memoryMb: 64 });
    return { exitCode, kernelFaults };
  } catch (e) {
    if (!(e instanceof GuestError)) throw e;
    return { crashedBeforeStart: e.crashedBeforeStart, message: e.message };
  }
}

test("a panic before the command started may be retried", async () => {
  expect(await guest("echo booting; echo 'Kernel panic - not syncing'")).toMatchObject({ crashedBeforeStart: true });
});

test("a panic after a start marker whose first byte was shown alone is reported, not retried (review by helper-105)", async () => {
  // The console stalls after "@": runQemu shows that part after 150 ms, then the rest arrives.
  const r = await guest("printf '@'; sleep 0.5; printf '@RINGFENCE-STARTED-n0nce@@\\n'; echo 'Kernel panic - not syncing'");
  expect(r).toMatchObject({ crashedBeforeStart: false, message: expect.stringContaining("Kernel panic") });
});

test("a panic after the guest wrote its started file is reported even without a readable marker", async () => {
  const r = await guest("echo '@@RINGFENCE-STA[    3.1] kernel message RTED-n0nce@@'; echo 'Kernel panic - not syncing'", (out) => writeFileSync(path.join(out, "started"), ""));
  expect(r).toMatchObject({ crashedBeforeStart: false });
});

test("the exit marker is read whole too", async () => {
  expect(await guest("echo '@@RINGFENCE-STARTED-n0nce@@'; printf '@'; sleep 0.5; printf '@RINGFENCE-EXIT-n0nce=3@@\\n'")).toEqual({ exitCode: 3, kernelFaults: [] });
});

test("a kernel Oops on the console is reported with the exit status, even an exit of 0 (review by helper-105)", async () => {
  const oops = "echo '@@RINGFENCE-STARTED-n0nce@@'; echo '[   41.200001] BUG: kernel NULL pointer dereference, address: 0000000000000008'; echo '[   41.200002] Oops: 0000 [#1] PREEMPT SMP NOPTI'; echo '[   41.3] traps: node[301] general protection fault ip:7f00 sp:7ffc error:0'";
  expect(await guest(`${oops}; echo '@@RINGFENCE-EXIT-n0nce=0@@'`)).toMatchObject({ exitCode: 0, kernelFaults: ["[   41.200001] BUG: kernel NULL pointer dereference, address: 0000000000000008", "[   41.200002] Oops: 0000 [#1] PREEMPT SMP NOPTI"] });
  expect(await guest("echo '@@RINGFENCE-STARTED-n0nce@@'; echo '[   2.0] ringfence: ok'; echo '@@RINGFENCE-EXIT-n0nce=0@@'")).toMatchObject({ exitCode: 0, kernelFaults: [] });
});
