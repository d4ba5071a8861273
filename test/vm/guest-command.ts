// What the guest is told to do, written into the writable share instead of the kernel command
// line (no length limit, no quoting through the bootloader): boot.conf for init.sh/stage2.sh,
// cmd.sh for the command itself with an explicit environment.
import { realpathSync, writeFileSync } from "node:fs";
import path from "node:path";
import { hiddenInGuest } from "./cache-dir.js";
import type { PreparedKernel } from "./kernels.js";

/** Where the writable share appears in the guest (also exported as RINGFENCE_VM_OUT). */
export const GUEST_OUT = "/run/rfout";

export interface GuestCommand {
  kernel: PreparedKernel;
  argv: readonly string[];
  /** Host directory the command runs in; the same path exists in the guest. */
  cwd: string;
  /** Project root, shared separately when the guest would hide it (under /tmp or /run). */
  projectDir: string;
  interactive: boolean;
  nonce: string;
}

export const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

const PASS_THROUGH = ["CI", "LANG", "LC_ALL", "TZ", "NODE_OPTIONS", "DEBUG", "FORCE_COLOR", "NO_COLOR"];
const PASS_PREFIXES = ["RINGFENCE_", "VITEST_"];

function guestPath(): string {
  // Like the host's PATH, minus what the guest hides, and sure to contain this node binary.
  const dirs = (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":").filter((d) => d && !hiddenInGuest(d));
  const nodeDir = path.dirname(process.execPath);
  return [...new Set([nodeDir, ...dirs, "/usr/local/sbin", "/usr/sbin", "/sbin"])].join(":");
}

export function guestEnv(cmd: GuestCommand): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    const wanted = PASS_THROUGH.includes(k) || PASS_PREFIXES.some((p) => k.startsWith(p));
    if (v !== undefined && wanted && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) env[k] = v;
  }
  if (process.stdout.isTTY && !("NO_COLOR" in env)) env.FORCE_COLOR ??= "1";
  return {
    ...env,
    HOME: "/tmp/home", // the shared root is read-only; /tmp is a tmpfs
    PATH: guestPath(),
    TERM: cmd.interactive ? (process.env.TERM ?? "vt100") : "dumb",
    NO_UPDATE_NOTIFIER: "1", // the guest has no network
    npm_config_update_notifier: "false",
    RINGFENCE_IN_VM: "1",
    RINGFENCE_KERNEL: cmd.kernel.name,
    RINGFENCE_KERNEL_RELEASE: cmd.kernel.release,
    RINGFENCE_KERNEL_VERSION: cmd.kernel.version,
    RINGFENCE_VM_OUT: GUEST_OUT,
  };
}

/** Where /lib/modules really is on the shared root (/usr/lib/modules with merged /usr). */
function modulesMountPoint(): string {
  return path.join(realpathSync("/lib"), "modules");
}

/** Write boot.conf and cmd.sh; returns whether the project needs its own share. */
export function writeGuestCommand(outDir: string, cmd: GuestCommand): { shareProject: boolean } {
  const shareProject = hiddenInGuest(cmd.projectDir) !== undefined;
  const cwdHidden = hiddenInGuest(cmd.cwd);
  const cwdInProject = cmd.cwd === cmd.projectDir || cmd.cwd.startsWith(`${cmd.projectDir}/`);
  if (cwdHidden && !cwdInProject) throw new Error(`cannot run in ${cmd.cwd}: ${cwdHidden} is a fresh tmpfs in the guest`);

  const boot = {
    RF_NONCE: cmd.nonce,
    RF_MODULES_SRC: cmd.kernel.modulesDir,
    RF_MODULES_DST: modulesMountPoint(),
    RF_PROJECT: cmd.projectDir,
    RF_PROJECT_SHARE: shareProject ? "1" : "",
    RF_INTERACTIVE: cmd.interactive ? "1" : "0",
  };
  writeFileSync(path.join(outDir, "boot.conf"), Object.entries(boot).map(([k, v]) => `${k}=${shQuote(v)}\n`).join(""));

  const exports = Object.entries(guestEnv(cmd)).map(([k, v]) => `export ${k}=${shQuote(v)}\n`);
  const script = [
    ...exports,
    `cd ${shQuote(cmd.cwd)} || exit 125\n`,
    `${cmd.argv.map(shQuote).join(" ")}\n`,
  ].join("");
  writeFileSync(path.join(outDir, "cmd.sh"), script);
  return { shareProject };
}
