// npm run test:kernel [-- --kernel lts|restricted] [-- <vitest args>]
// Boots each kernel of the matrix and runs the *.kernel.test.ts files in it: a full run in three
// guests per kernel (shards.ts), a filtered run (vitest args) in one. A guest has one vCPU (TCG
// runs it on one host thread), so guests run side by side, one per host core
// (RINGFENCE_KERNEL_JOBS overrides; 1 = one after the other), their console lines prefixed. The last line of output is the total,
// "N passed, N failed", which CI reads; a kernel that cannot be fetched or booted, a guest that ran no
// tests, or (in a full run, without vitest args) skipped any, counts as failed (tally.ts).
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { GUEST_OUT } from "./guest-command.js";
import { isKernelName, KERNEL_NAMES, type KernelName } from "./kernels.js";
import { PROJECT_DIR, removeOutDir, runInGuest } from "./run-in-guest.js";
import { missingShardFiles, planJobs, type Job } from "./shards.js";
import { tallyReport, withKernelFaults, type Tally } from "./tally.js";

function parseArgs(argv: string[]): { kernels: KernelName[]; vitestArgs: string[] } {
  const sep = argv.indexOf("--");
  const own = sep < 0 ? argv : argv.slice(0, sep);
  const vitestArgs = sep < 0 ? [] : argv.slice(sep + 1);
  const picked: string[] = [];
  for (let i = 0; i < own.length; i++) {
    if (own[i] === "--kernel" || own[i] === "-k") picked.push(...(own[++i] ?? "").split(","));
    else if (own[i] === "--help" || own[i] === "-h") {
      console.log(`usage: npm run test:kernel -- [--kernel ${KERNEL_NAMES.join("|")}]... [-- <vitest args>]\n` +
        "Env: RINGFENCE_KERNELS=lts,restricted selects kernels too. See test/vm/README.md.");
      process.exit(0);
    } else throw new Error(`unknown argument ${own[i]} (vitest arguments go after --)`);
  }
  if (picked.length === 0) picked.push(...(process.env.RINGFENCE_KERNELS?.split(",") ?? KERNEL_NAMES));
  const kernels = picked.map((k) => k.trim()).filter(Boolean);
  // An empty RINGFENCE_KERNELS, `--kernel ''` or a trailing `--kernel` must not become a run of
  // zero kernels that reports "0 passed, 0 failed" and exits 0.
  if (kernels.length === 0) throw new Error(`no kernel selected (expected ${KERNEL_NAMES.join(", ")})`);
  for (const k of kernels) if (!isKernelName(k)) throw new Error(`unknown kernel '${k}' (expected ${KERNEL_NAMES.join(", ")})`);
  return { kernels: [...new Set(kernels)] as KernelName[], vitestArgs };
}

interface JobResult {
  tally: Tally;
  line: string;
  /** "lts (release, version)" once a guest of the kernel booted. */
  label?: string;
}

/**
 * A shard's guest is stopped as hung after 40 min (the longest took 17 min locally, about 23 in CI):
 * a hang in a worker's first shard and its two next ones still end within CI's 90 min. A filtered
 * run's single guest keeps run-in-guest's 75. RINGFENCE_VM_TIMEOUT (seconds) overrides both.
 */
const SHARD_GUARD_MS = 40 * 60_000;

async function runJob(name: KernelName, vitestArgs: string[], sharded: boolean, linePrefix?: string): Promise<JobResult> {
  const argv = [
    // Not `npx vitest`: npx alone spends ~40 s under TCG before vitest even starts.
    "node_modules/.bin/vitest", "run", "--config", "vitest.kernel.config.ts",
    // The default loader writes the bundled config into node_modules/.vite-temp: read-only here.
    "--configLoader", "runner",
    "--reporter=default", "--reporter=json", `--outputFile=${GUEST_OUT}/results.json`,
    ...vitestArgs,
  ];
  let result;
  try {
    // qemu64 (no AVX, no AES-NI: the kernel's generic C crypto) rather than "max" for the kernel
    // tests: 2026-12-07, lts, the same files side by side, a 128 MiB stream took 101 s against 148 s
    // and keys.kernel.test.ts 181 s against 215 s; restricted (aes-256-ccm), a 128 MiB stream, 217 s
    // against 244 s. The bench keeps "max" (npm run vm).
    const timeoutMs = sharded && !process.env.RINGFENCE_VM_TIMEOUT ? SHARD_GUARD_MS : undefined;
    result = await runInGuest({ kernel: name, argv, cwd: PROJECT_DIR, linePrefix, timeoutMs, cpu: process.env.RINGFENCE_VM_CPU ?? "qemu64" });
  } catch (e) {
    console.error(`[ringfence-vm] ${e instanceof Error ? e.message : String(e)}`);
    return { tally: { passed: 0, failed: 1, skipped: 0 }, line: "FAILED: the kernel could not be fetched or booted, or its guest did not finish (reason above; counted as 1 failure)" };
  }
  try {
    const label = `${name} (${result.kernel.release}, ${result.kernel.version})`;
    const file = path.join(result.outDir, "results.json");
    if (!existsSync(file)) {
      return { tally: { passed: 0, failed: 1, skipped: 0 }, label, line: `vitest wrote no results (exit ${result.exitCode}; counted as 1 failure)` };
    }
    const { tally, note } = withKernelFaults(tallyReport(readFileSync(file, "utf8"), result.exitCode, vitestArgs.length === 0), result.kernelFaults);
    return { tally, label, line: `${tally.passed} passed, ${tally.failed} failed, ${tally.skipped} skipped${note}` };
  } finally {
    removeOutDir(result.outDir);
  }
}

function jobCount(jobs: number): number {
  const env = Number(process.env.RINGFENCE_KERNEL_JOBS);
  const n = Number.isInteger(env) && env > 0 ? env : availableParallelism();
  return Math.max(1, Math.min(n, jobs));
}

const jobName = (j: Job) => (j.shard ? `${j.kernel}/${j.shard.name}` : j.kernel);

async function main(): Promise<number> {
  const { kernels, vitestArgs } = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const missing = vitestArgs.length === 0 ? missingShardFiles(PROJECT_DIR) : [];
  if (missing.length > 0) throw new Error(`test/vm/shards.ts names files that do not exist: ${missing.join(", ")}`);
  const plan = planJobs(kernels, vitestArgs);
  const jobs = jobCount(plan.length);
  const width = Math.max(...plan.map((j) => jobName(j).length));
  const queue = [...plan];
  const results = new Map<Job, JobResult & { seconds: number }>();
  console.error(`[ringfence-vm] kernels ${kernels.join(", ")}: ${plan.length} guest${plan.length > 1 ? "s" : ""} (${plan.map(jobName).join(", ")}), ${jobs} at a time`);
  const worker = async () => {
    for (let j = queue.shift(); j !== undefined; j = queue.shift()) {
      const t = performance.now();
      console.error(`[ringfence-vm] === ${j.shard ? `kernel ${j.kernel}, shard ${j.shard.name}` : `kernel ${j.kernel}`} ===`);
      const r = await runJob(j.kernel, j.args, j.shard !== undefined, jobs > 1 ? `${jobName(j).padEnd(width)} | ` : undefined);
      results.set(j, { ...r, seconds: (performance.now() - t) / 1000 });
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  const total: Tally = { passed: 0, failed: 0, skipped: 0 };
  console.log("\nkernel matrix:");
  for (const k of kernels) {
    const mine = plan.filter((j) => j.kernel === k).map((j) => ({ job: j, r: results.get(j)! }));
    const sum: Tally = { passed: 0, failed: 0, skipped: 0 };
    for (const { r } of mine) for (const key of ["passed", "failed", "skipped"] as const) sum[key] += r.tally[key];
    const label = mine.find(({ r }) => r.label)?.r.label ?? k;
    const seconds = mine.reduce((a, { r }) => a + r.seconds, 0);
    if (mine.length === 1) console.log(`  ${label}: ${mine[0]!.r.line} [${seconds.toFixed(0)}s]`);
    else {
      console.log(`  ${label}: ${sum.passed} passed, ${sum.failed} failed, ${sum.skipped} skipped [${seconds.toFixed(0)}s in ${mine.length} guests]`);
      for (const { job, r } of mine) console.log(`    ${job.shard!.name}: ${r.line} [${r.seconds.toFixed(0)}s]`);
    }
    for (const key of ["passed", "failed", "skipped"] as const) total[key] += sum[key];
  }
  console.log(`  total time ${((performance.now() - started) / 1000).toFixed(0)}s`);
  if (total.skipped > 0) console.log(`${total.skipped} skipped${vitestArgs.length === 0 ? " (counted as failed above)" : " (filtered run)"}`);
  // The last line, in the form CI reads.
  console.log(`${total.passed} passed, ${total.failed} failed`);
  return total.failed > 0 ? 1 : 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  console.error(`test:kernel: ${e instanceof Error ? e.message : String(e)}`);
  console.log("0 passed, 1 failed");
  process.exitCode = 2;
}
