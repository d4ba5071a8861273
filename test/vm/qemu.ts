// Boot a prepared kernel under qemu (TCG), stream its console, and report how the guest ended.
// TCG only: /dev/kvm exists on the build hosts but stock kernels crash under nested KVM there.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { PreparedKernel } from "./kernels.js";

export interface QemuRun {
  kernel: PreparedKernel;
  initramfs: string;
  /** Host dir shared read-write as tag rfout (boot.conf, cmd.sh, exit-code, results). */
  outDir: string;
  /** Host project dir to share read-only as tag rfproject, when the guest would hide it. */
  projectShare?: string;
  nonce: string;
  interactive: boolean;
  timeoutMs: number;
  /** qemu -cpu model. */
  cpu: string;
  smp: number;
  memoryMb: number;
  /** Put before every console line, and print only whole lines: guests running side by side. */
  linePrefix?: string;
}

export interface QemuResult {
  exitCode: number;
  /** From qemu start until the guest began the command. */
  bootMs: number | undefined;
  totalMs: number;
  /** Console lines where the kernel reported an Oops or BUG (the first few): a kernel fault. */
  kernelFaults: string[];
}

/**
 * The start of a kernel's report of its own fault, as printk puts it on the console (above the
 * `quiet` console level): the command may still exit 0 when only one of its processes was killed.
 */
const KERNEL_FAULT = /\[\s*\d+\.\d+\] (BUG: |Oops: |kernel BUG at |general protection fault|Kernel panic)/;

const TAIL_LINES = 40;

/** qemu's option parser treats ',' as a separator; a literal comma is written ',,'. */
const qarg = (s: string) => s.replace(/,/g, ",,");

export function qemuArgs(r: QemuRun): string[] {
  const share = (p: string, tag: string, opts: string) => ["-virtfs", `local,path=${qarg(p)},mount_tag=${tag},${opts},multidevs=remap`];
  return [
    ...["-accel", "tcg", "-cpu", r.cpu, "-smp", String(r.smp), "-m", String(r.memoryMb)],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    // Interactive: mon:stdio turns qemu's mux on (Ctrl-A x quits) and terminal signals off, so ^C
    // and ^Z reach the guest's shell instead of ending the VM (plain stdio keeps signal=on).
    ...["-serial", r.interactive ? "mon:stdio" : "stdio"],
    ...["-kernel", r.kernel.vmlinuz, "-initrd", r.initramfs],
    // panic=-1 + -no-reboot: a guest that panics makes qemu exit instead of hanging.
    ...["-append", `console=ttyS0 quiet panic=-1 ${process.env.RINGFENCE_VM_APPEND ?? ""}`.trim()],
    ...share("/", "hostroot", "security_model=passthrough,readonly=on"),
    ...share(r.outDir, "rfout", "security_model=none"),
    ...(r.projectShare ? share(r.projectShare, "rfproject", "security_model=passthrough,readonly=on") : []),
  ];
}

export class GuestError extends Error {
  constructor(
    message: string,
    /** The guest crashed before the command began (so a retry cannot run it twice). */
    readonly crashedBeforeStart = false,
  ) {
    super(message);
  }
}

/** Every guest running now: a signal to this process ends them all (the matrix runs two at once). */
const running = new Set<ChildProcess>();
let signalsHandled = false;
function endGuestsOnSignal(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(s, (sig: NodeJS.Signals) => {
      for (const c of running) c.kill("SIGKILL");
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
}

export function runQemu(r: QemuRun): Promise<QemuResult> {
  const started = performance.now();
  const exitMarker = new RegExp(`@@RINGFENCE-EXIT-${r.nonce}=(\\d+)@@`);
  const startMarker = `@@RINGFENCE-STARTED-${r.nonce}@@`;
  const child = spawn("qemu-system-x86_64", qemuArgs(r), {
    stdio: r.interactive ? "inherit" : ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  let bootMs: number | undefined;
  let markerCode: number | undefined;
  let initFailed = false;
  const kernelFaults: string[] = [];
  let pending = "";
  let shownPart = ""; // start of the current line, already printed
  let flushTimer: NodeJS.Timeout | undefined;
  const utf8 = new StringDecoder("utf8"); // a character may be split across chunks

  const kill = () => child.kill("SIGKILL");
  running.add(child);
  endGuestsOnSignal();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, r.timeoutMs);

  const onLine = (raw: string, complete: boolean) => {
    const line = raw.replace(/\r$/, "");
    // Markers are matched on the whole line: its start may already be shown (a stalled "@").
    const whole = shownPart + line;
    const exit = exitMarker.exec(whole);
    if (exit) {
      markerCode = Number(exit[1]);
      // The command is done; a guest that then fails to power off must not cost the whole timeout.
      clearTimeout(timer);
      setTimeout(kill, 15_000).unref();
    } else if (whole.includes(startMarker)) bootMs = performance.now() - started;
    else if (/^\[[\s\d.]+\] (sysrq: Power Off|reboot: Power down)$/.test(line)) {
      // our own power-off, not news
    } else {
      if (line.includes("@@RINGFENCE-INIT-FAILED@@")) initFailed = true;
      if (KERNEL_FAULT.test(whole) && kernelFaults.length < 3) kernelFaults.push(whole);
      if (r.linePrefix === undefined) process.stdout.write(complete ? `${line}\n` : line);
      else if (complete) process.stdout.write(`${r.linePrefix}${line}\n`);
      shownPart += line;
      if (!complete) return;
      tail.push(shownPart);
      if (tail.length > TAIL_LINES) tail.shift();
    }
    shownPart = "";
  };
  child.stdout?.on("data", (chunk: Buffer) => {
    pending += utf8.write(chunk);
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const l of lines) onLine(l, true);
    // Show a prompt or progress output that stays without a newline (unless it may be a marker).
    clearTimeout(flushTimer);
    if (r.linePrefix !== undefined) return; // interleaved guests: whole lines only
    flushTimer = setTimeout(() => {
      if (pending.includes("@@")) return;
      if (pending) onLine(pending, false);
      pending = "";
    }, 150);
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    process.stderr.write(r.linePrefix === undefined ? chunk : chunk.toString("utf8").replace(/^(?=.)/gm, r.linePrefix));
    tail.push(...chunk.toString("utf8").trimEnd().split("\n"));
  });

  return new Promise((resolve, reject) => {
    child.on("error", (e) => {
      running.delete(child);
      reject(new GuestError(`cannot start qemu-system-x86_64: ${e.message} (install qemu-system-x86)`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(flushTimer);
      running.delete(child);
      if (pending) onLine(pending, true);
      const totalMs = performance.now() - started;
      // The exit-code file is authoritative; the console marker covers a share that failed to flush.
      const file = path.join(r.outDir, "exit-code");
      const fromFile = existsSync(file) ? Number.parseInt(readFileSync(file, "utf8"), 10) : undefined;
      const exitCode = Number.isInteger(fromFile) ? fromFile : markerCode;
      if (exitCode !== undefined && !timedOut) return resolve({ exitCode, bootMs, totalMs, kernelFaults });
      const why = timedOut
        ? `timed out after ${r.timeoutMs / 1000}s (RINGFENCE_VM_TIMEOUT)`
        : initFailed
          ? "the initramfs could not set up the guest"
          : `qemu ended (${signal ?? `exit ${code}`}) without the guest reporting an exit status (kernel panic?)`;
      // The guest's "started" file too: kernel messages printed into the marker's line hide it.
      const commandBegan = bootMs !== undefined || existsSync(path.join(r.outDir, "started"));
      const crashedBeforeStart = !r.interactive && !timedOut && !initFailed && !commandBegan;
      const msg = `guest ${r.kernel.name} (${r.kernel.release}): ${why}\n--- last console lines ---\n${tail.join("\n")}`;
      reject(new GuestError(msg, crashedBeforeStart));
    });
  });
}
