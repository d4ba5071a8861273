// One guest run end to end: kernel + initramfs + share dir + qemu. Used by vm-cli and kernel-matrix.
import { randomBytes } from "node:crypto";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { elapsed } from "./exec.js";
import { writeGuestCommand } from "./guest-command.js";
import { buildInitramfs } from "./initramfs.js";
import { prepareKernel, type KernelName, type PreparedKernel } from "./kernels.js";
import { GuestError, runQemu, type QemuResult } from "./qemu.js";

/** The repository root (this file is test/vm/run-in-guest.ts). */
export const PROJECT_DIR = realpathSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../.."));

export interface GuestRunOptions {
  kernel: KernelName;
  argv: readonly string[];
  cwd?: string;
  interactive?: boolean;
  /** Default 75 min, or RINGFENCE_VM_TIMEOUT (seconds). */
  timeoutMs?: number;
  /** qemu -cpu model: default RINGFENCE_VM_CPU, else "max". */
  cpu?: string;
  /** Prefix the guest's console lines (whole lines only): set when guests run side by side. */
  linePrefix?: string;
}

export interface GuestRunResult extends QemuResult {
  kernel: PreparedKernel;
  /** The host side of the guest's RINGFENCE_VM_OUT; remove it with removeOutDir(). */
  outDir: string;
}

const envNumber = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

const log = (msg: string) => console.error(`[ringfence-vm] ${msg}`);

export async function runInGuest(o: GuestRunOptions): Promise<GuestRunResult> {
  let t = performance.now();
  const kernel = prepareKernel(o.kernel);
  log(`kernel ${kernel.name}: ${kernel.release} (${kernel.version}) ready in ${elapsed(t)}`);
  t = performance.now();
  const initramfs = buildInitramfs(kernel);
  log(`initramfs ${path.basename(initramfs)} ready in ${elapsed(t)}`);

  const outDir = mkdtempSync(path.join(tmpdir(), "ringfence-vm-"));
  try {
    const nonce = randomBytes(8).toString("hex");
    const interactive = o.interactive ?? false;
    const cwd = realpathSync(o.cwd ?? process.cwd());
    const { shareProject } = writeGuestCommand(outDir, { kernel, argv: o.argv, cwd, projectDir: PROJECT_DIR, interactive, nonce });
    const run = () =>
      runQemu({
        kernel,
        initramfs,
        outDir,
        projectShare: shareProject ? PROJECT_DIR : undefined,
        nonce,
        interactive,
        // A hang guard, not a budget. kernel-matrix.ts sets 40 min for each of a full run's
        // shards (shards.ts); 75 min is for one guest running a whole suite (a filtered run, vm-cli).
        // 2026-12-07: the whole kernel suite took over 75 min per guest on "max" with the 1 GiB
        // stream, 39 and 48 min (lts, restricted) on qemu64 with the daemon bundled.
        timeoutMs: o.timeoutMs ?? envNumber("RINGFENCE_VM_TIMEOUT", 75 * 60) * 1000,
        // 1 vCPU: with 2, multi-threaded TCG occasionally (~1 in 10 boots of 7.3) executes a stale
        // int3 from the kernel's live code patching and panics; 2 was not faster on 2 host cores.
        cpu: o.cpu ?? process.env.RINGFENCE_VM_CPU ?? "max",
        smp: envNumber("RINGFENCE_VM_SMP", 1),
        memoryMb: envNumber("RINGFENCE_VM_MEMORY", 2048),
        linePrefix: o.linePrefix,
      });
    let result: QemuResult;
    try {
      result = await run();
    } catch (e) {
      // A crash before the command started is safe to retry once; anything later is reported.
      if (!(e instanceof GuestError && e.crashedBeforeStart)) throw e;
      log(`guest ${kernel.name} crashed while booting; retrying once`);
      result = await run();
    }
    const boot = result.bootMs === undefined ? "" : `booted in ${(result.bootMs / 1000).toFixed(1)}s, `;
    log(`guest ${kernel.name}: ${boot}exit ${result.exitCode} after ${(result.totalMs / 1000).toFixed(1)}s`);
    for (const line of result.kernelFaults) log(`guest ${kernel.name}: the kernel reported a fault: ${line.trim()}`);
    return { ...result, kernel, outDir };
  } catch (e) {
    removeOutDir(outDir);
    throw e;
  }
}

export function removeOutDir(outDir: string): void {
  if (process.env.RINGFENCE_VM_KEEP === "1") log(`kept guest share dir ${outDir}`);
  else rmSync(outDir, { recursive: true, force: true });
}
