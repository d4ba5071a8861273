// Synchronous child-process helpers for the host side of the test bed.
// Failures throw with the command line and its stderr, so a broken step names itself.
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { existsSync } from "node:fs";

export interface RunOptions {
  cwd?: string;
  /** Stream the child's output to ours instead of capturing it (long downloads). */
  inherit?: boolean;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly status: number | null,
    readonly stderr: string,
  ) {
    super(`command failed (exit ${status ?? "signal"}): ${command}${stderr ? `\n${stderr.trim()}` : ""}`);
  }
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): string {
  const spawnOpts: SpawnSyncOptions = {
    cwd: opts.cwd,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    stdio: opts.inherit ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
  };
  const r = spawnSync(cmd, args, spawnOpts);
  const line = [cmd, ...args].join(" ");
  if (r.error) throw new CommandError(line, null, String(r.error.message));
  if (r.status !== 0) throw new CommandError(line, r.status, String(r.stderr ?? ""));
  return String(r.stdout ?? "");
}

/** True when the command exits 0; used for predicates such as `dpkg --compare-versions`. */
export function succeeds(cmd: string, args: readonly string[]): boolean {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v "$1" >/dev/null`, "sh", cmd], { stdio: "ignore" }).status === 0;
}

/**
 * A tool from /usr/sbin or /sbin, which a normal user's PATH on Debian lacks (found by review:
 * `npm run vm` as a user could not run depmod).
 */
export function adminCommand(cmd: string, debPackage: string): string {
  if (hasCommand(cmd)) return cmd;
  const found = ["/usr/sbin", "/sbin"].map((d) => `${d}/${cmd}`).find((p) => existsSync(p));
  if (!found) throw new Error(`${cmd} not found on PATH or in /usr/sbin, /sbin: install the ${debPackage} package`);
  return found;
}

/** Seconds since `start` (from performance.now()), for the phase timings we print. */
export function elapsed(start: number): string {
  return `${((performance.now() - start) / 1000).toFixed(1)}s`;
}
