// apt access without touching the system's apt configuration.
// "system" uses the machine's configured sources (bookworm) and its existing lists;
// "sid" is a private configuration under the cache dir for sid + experimental,
// so the host's sources.list.d is never edited and no lock is taken.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cachePath } from "./cache-dir.js";
import { CommandError, elapsed, run, succeeds, type RunOptions } from "./exec.js";

export type AptView = "system" | "sid";

export interface PackageVersion {
  name: string;
  version: string;
}

const isRoot = process.getuid?.() === 0;

function sidRoot(): string {
  const root = cachePath("apt-sid");
  for (const d of ["lists/partial", "archives/partial", "parts"]) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(
    path.join(root, "parts", "sid.sources"),
    [
      "Types: deb",
      "URIs: http://deb.debian.org/debian",
      "Suites: sid experimental",
      "Components: main",
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
      "",
    ].join("\n"),
  );
  return root;
}

/**
 * Run an apt tool. The private sid state (lists, pkgcache.bin) is shared by concurrent runs
 * (Debug::NoLocking turns apt's own lock off), so serialise on a lock file with flock(1).
 */
function apt(view: AptView, tool: string, args: string[], opts: RunOptions = {}): string {
  const opt = options(view);
  if (view === "system") return run(tool, [...opt, ...args], opts);
  return run("flock", [path.join(sidRoot(), "lock"), tool, ...opt, ...args], opts);
}

function options(view: AptView): string[] {
  // As root apt drops to _apt for downloads, which cannot write into $HOME/.cache; stay root.
  const common = isRoot ? ["-o", "APT::Sandbox::User=root"] : [];
  if (view === "system") return common;
  const root = sidRoot();
  return [
    ...common,
    ...["-o", "Dir::Etc::SourceList=/dev/null"],
    ...["-o", `Dir::Etc::SourceParts=${path.join(root, "parts")}`],
    ...["-o", `Dir::State::Lists=${path.join(root, "lists")}`],
    ...["-o", `Dir::Cache=${root}`],
    // Keep the binary cache (Debian's docker images turn it off): later apt-cache runs are fast.
    ...["-o", "Dir::Cache::pkgcache=pkgcache.bin", "-o", "Dir::Cache::srcpkgcache=srcpkgcache.bin"],
    ...["-o", "Dir::State::status=/dev/null"],
    ...["-o", "Debug::NoLocking=1"],
  ];
}

let sidUpdated = false;

/** Refresh the private sid lists, at most once per process. The system lists are left alone. */
export function updateSid(): void {
  if (sidUpdated) return;
  const t = performance.now();
  try {
    apt("sid", "apt-get", ["-q", "--error-on=any", "update"]);
  } catch (e) {
    throw new Error(`could not refresh Debian sid/experimental package lists (network to deb.debian.org?)\n${String(e)}`);
  }
  sidUpdated = true;
  console.error(`[ringfence-vm] refreshed sid/experimental lists in ${elapsed(t)}`);
}

/**
 * Every available version (all suites, not only the candidate) of the packages whose name
 * matches the regex, in one apt-cache run: each run re-reads the lists, which takes a second.
 */
export function versionsMatching(view: AptView, nameRegex: string): PackageVersion[] {
  let out: string;
  try {
    out = apt(view, "apt-cache", ["show", nameRegex]);
  } catch (e) {
    if (e instanceof CommandError && /No packages found/.test(e.stderr)) return [];
    throw e;
  }
  const found: PackageVersion[] = [];
  for (const stanza of out.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (name && version) found.push({ name, version });
  }
  return found;
}

/** dpkg --compare-versions semantics (so 7.3~rc7 < 7.3 and 6.12.117 > 6.12.99). */
export function versionGreater(a: string, b: string): boolean {
  return succeeds("dpkg", ["--compare-versions", a, "gt", b]);
}

export function newest<T extends { version: string }>(items: readonly T[]): T | undefined {
  let best: T | undefined;
  for (const it of items) if (!best || versionGreater(it.version, best.version)) best = it;
  return best;
}

/** Download exact name=version .debs into dir. */
export function download(view: AptView, pkgs: readonly PackageVersion[], dir: string): void {
  try {
    apt(view, "apt-get", ["-q", "download", ...pkgs.map((p) => `${p.name}=${p.version}`)], { cwd: dir, inherit: true });
  } catch (e) {
    // apt printed its reason above (its output is not captured); a 404 means stale package lists.
    const hint = view === "system" ? "run `apt-get update` as root if the host's package lists are old" : "the private sid lists are refreshed on each run";
    throw new Error(`${e instanceof Error ? e.message : String(e)} (apt's reason is printed above; ${hint})`);
  }
}
