// npm run vm -- [--kernel lts|restricted] [--interactive] <command...>
// Runs one command in a guest from the current directory and exits with its status.
import { isKernelName, KERNEL_NAMES, type KernelName } from "./kernels.js";
import { removeOutDir, runInGuest } from "./run-in-guest.js";

const USAGE = `usage: npm run vm -- [--kernel ${KERNEL_NAMES.join("|")}] [--interactive] [--timeout SECONDS] <command> [args...]

Boots a stock Debian kernel under qemu (TCG) with this machine's root shared read-only,
and runs <command> as root in the current directory. Default kernel: lts.
  lts         newest linux-image-6.12.*+deb12-amd64 from the bookworm sources
  restricted  newest Debian kernel >= 7.3 from sid/experimental (af_alg_restrict)

  --interactive  attach the terminal to the guest console (e.g. \`npm run vm -- -i sh\`;
                 quit qemu with Ctrl-A x)

Examples:
  npm run vm -- uname -a
  npm run vm -- --kernel restricted sh -c 'cat /proc/sys/crypto/af_alg_restrict; id'

Environment: RINGFENCE_VM_CACHE (kernel cache dir), RINGFENCE_VM_TIMEOUT (seconds),
RINGFENCE_VM_SMP, RINGFENCE_VM_MEMORY (MiB), RINGFENCE_VM_OFFLINE=1 (use cached kernels),
RINGFENCE_VM_KEEP=1 (keep the results share dir). See test/vm/README.md.`;

class UsageError extends Error {}

function parse(args: string[]): { kernel: KernelName; interactive: boolean; timeoutMs?: number; argv: string[] } {
  let kernel: KernelName = "lts";
  let interactive = false;
  let timeoutMs: number | undefined;
  while (args.length > 0) {
    const a = args[0]!;
    if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else if (a === "--kernel" || a === "-k") {
      const k = args[1] ?? "";
      if (!isKernelName(k)) throw new UsageError(`unknown kernel '${k}' (expected ${KERNEL_NAMES.join(" or ")})`);
      kernel = k;
      args = args.slice(2);
    } else if (a === "--interactive" || a === "-i") {
      interactive = true;
      args = args.slice(1);
    } else if (a === "--timeout") {
      timeoutMs = Number(args[1]) * 1000;
      if (!(timeoutMs > 0)) throw new UsageError(`bad --timeout '${args[1]}'`);
      args = args.slice(2);
    } else if (a === "--") {
      args = args.slice(1);
      break;
    } else if (a.startsWith("-")) {
      throw new UsageError(`unknown option ${a}`);
    } else break;
  }
  if (args.length === 0) throw new UsageError("no command given");
  return { kernel, interactive, timeoutMs, argv: args };
}

try {
  const opts = parse(process.argv.slice(2));
  // npm runs scripts in the package root; INIT_CWD is where `npm run vm` was typed.
  const result = await runInGuest({ ...opts, cwd: process.env.INIT_CWD ?? process.cwd() });
  removeOutDir(result.outDir);
  process.exitCode = result.exitCode;
} catch (e) {
  console.error(`vm: ${e instanceof Error ? e.message : String(e)}`);
  if (e instanceof UsageError) console.error(USAGE);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
