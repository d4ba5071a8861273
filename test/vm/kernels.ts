// The kernel matrix: which Debian kernel each name means, and a cached, depmod'ed extraction of it.
//   lts        newest linux-image-6.12.*+deb12-amd64 from the machine's bookworm sources
//   restricted newest linux-binary-X.Y*-amd64 >= 7.3 from sid/experimental (has af_alg_restrict)
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { download, newest, updateSid, versionsMatching, type AptView, type PackageVersion } from "./apt.js";
import { cachePath } from "./cache-dir.js";
import { adminCommand, elapsed, run } from "./exec.js";

export const KERNEL_NAMES = ["lts", "restricted"] as const;
export type KernelName = (typeof KERNEL_NAMES)[number];

export function isKernelName(s: string): s is KernelName {
  return (KERNEL_NAMES as readonly string[]).includes(s);
}

export interface PreparedKernel {
  name: KernelName;
  /** Debian package version, e.g. 6.12.117-1~deb12u1 or 7.3~rc7-1~exp1. */
  version: string;
  /** `uname -r` of the kernel, e.g. 6.12.117+deb12-amd64. */
  release: string;
  packages: string[];
  vmlinuz: string;
  /** Its size, checked before each use: a tree damaged since (a host reset mid-write) is fetched again. */
  vmlinuzBytes?: number;
  /** Directory holding `<release>/`: bind-mounted over the guest's /lib/modules. */
  modulesDir: string;
}

interface Resolved {
  view: AptView;
  packages: PackageVersion[];
}

function resolveLts(): Resolved {
  const best = newest(versionsMatching("system", "^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64$"));
  if (!best) {
    throw new Error(
      "kernel lts: no linux-image-6.12.*+deb12-amd64 package in the configured apt sources " +
        "(bookworm / bookworm-security). Run `apt-get update` as root and retry.",
    );
  }
  return { view: "system", packages: [best] };
}

/** Upstream version of a linux-binary-X.Y[.Z][+debN]-amd64 name; other flavours (cloud, rt) give undefined. */
function upstreamOf(name: string): [number, number] | undefined {
  const m = /^linux-binary-(\d+)\.(\d+)(?:\.\d+)?(?:\+[0-9a-z.]+)?-amd64$/.exec(name);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

function resolveRestricted(): Resolved {
  updateSid();
  const all = versionsMatching("sid", "^linux-(binary|modules|base)-[0-9].*-amd64$");
  const candidates = all.filter((p) => {
    const up = upstreamOf(p.name);
    return up !== undefined && (up[0] > 7 || (up[0] === 7 && up[1] >= 3));
  });
  const best = newest(candidates);
  if (!best) throw new Error("kernel restricted: no linux-binary-*-amd64 >= 7.3 in Debian sid/experimental");
  // linux-modules holds the .ko files; linux-base holds modules.builtin (needed so modprobe
  // accepts built-in modules such as encrypted-keys) and the config.
  const suffix = best.name.slice("linux-binary-".length);
  const packages = [best];
  for (const extra of [`linux-modules-${suffix}`, `linux-base-${suffix}`]) {
    if (!all.some((p) => p.name === extra && p.version === best.version)) {
      throw new Error(`kernel restricted: ${best.name} ${best.version} found, but ${extra} ${best.version} is missing`);
    }
    packages.push({ name: extra, version: best.version });
  }
  return { view: "sid", packages };
}

const MANIFEST = "kernel.json";

function kernelRoot(name: KernelName): string {
  return cachePath("kernels", name);
}

/**
 * The extraction in `dir`, if it is whole. A manifest that does not parse (written, then a host
 * reset) or a tree missing its vmlinuz or modules.dep made every later run fail the same way until
 * someone deleted the cache (review by helper-122); such a tree counts as absent and is fetched again.
 */
export function readManifest(dir: string): PreparedKernel | undefined {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(file)) return undefined;
  let k: PreparedKernel;
  try {
    k = JSON.parse(readFileSync(file, "utf8")) as PreparedKernel;
  } catch (e) {
    console.error(`[ringfence-vm] ${file} is damaged (${String(e)}): fetching that kernel again`);
    return undefined;
  }
  const damage = treeDamage(k);
  if (damage) console.error(`[ringfence-vm] the kernel cached in ${dir} is damaged (${damage}): fetching it again`);
  return damage ? undefined : k;
}

function treeDamage(k: PreparedKernel): string | undefined {
  if (typeof k.vmlinuz !== "string" || typeof k.modulesDir !== "string" || typeof k.release !== "string") return "manifest fields missing";
  let bytes: number;
  try {
    bytes = statSync(k.vmlinuz).size;
  } catch {
    return `no ${k.vmlinuz}`;
  }
  if (bytes === 0 || (k.vmlinuzBytes !== undefined && bytes !== k.vmlinuzBytes)) return `${k.vmlinuz} is ${bytes} bytes, expected ${k.vmlinuzBytes ?? "more than 0"}`;
  const dep = path.join(k.modulesDir, k.release, "modules.dep");
  try {
    if (statSync(dep).size === 0) return `${dep} is empty`;
  } catch {
    return `no ${dep}`;
  }
  return undefined;
}

/** Unpack the .debs and make the tree look like an installed kernel (modules.dep included). */
function extract(name: KernelName, resolved: Resolved, staging: string, final: string): PreparedKernel {
  const debs = path.join(staging, "debs");
  const root = path.join(staging, "root");
  mkdirSync(debs, { recursive: true });
  mkdirSync(root, { recursive: true });
  const t = performance.now();
  download(resolved.view, resolved.packages, debs);
  console.error(`[ringfence-vm] downloaded ${name} kernel packages in ${elapsed(t)}`);
  for (const deb of readdirSync(debs).filter((f) => f.endsWith(".deb"))) run("dpkg-deb", ["-x", path.join(debs, deb), root]);
  rmSync(debs, { recursive: true, force: true });

  // 6.12 ships /lib/modules, 7.x ships /usr/lib/modules; depmod -b only looks at <root>/lib/modules.
  const modRel = existsSync(path.join(root, "usr/lib/modules")) ? "usr/lib/modules" : "lib/modules";
  if (modRel === "usr/lib/modules" && !existsSync(path.join(root, "lib"))) symlinkSync("usr/lib", path.join(root, "lib"));
  const releases = readdirSync(path.join(root, modRel)).filter((d) => existsSync(path.join(root, modRel, d, "kernel")));
  if (releases.length !== 1) throw new Error(`kernel ${name}: expected one module tree in ${modRel}, found ${releases.join(", ") || "none"}`);
  const release = releases[0]!;
  if (!existsSync(path.join(root, modRel, release, "modules.builtin"))) {
    throw new Error(`kernel ${name}: ${modRel}/${release}/modules.builtin missing; modprobe would reject built-in modules`);
  }
  run(adminCommand("depmod", "kmod"), ["-b", root, release]);
  const vmlinuz = [path.join(root, "boot", `vmlinuz-${release}`), path.join(root, modRel, release, "vmlinuz")].find((f) => existsSync(f));
  if (!vmlinuz) throw new Error(`kernel ${name}: no vmlinuz in ${resolved.packages.map((p) => p.name).join(", ")}`);

  const relocate = (p: string) => path.join(final, path.relative(staging, p));
  return {
    name,
    version: resolved.packages[0]!.version,
    release,
    packages: resolved.packages.map((p) => `${p.name}=${p.version}`),
    vmlinuz: relocate(vmlinuz),
    vmlinuzBytes: statSync(vmlinuz).size,
    modulesDir: relocate(path.join(root, modRel)),
  };
}

function cachedKernels(name: KernelName): { dir: string; kernel: PreparedKernel }[] {
  const base = kernelRoot(name);
  return readdirSync(base)
    .filter((d) => !d.startsWith("."))
    .flatMap((d) => {
      const kernel = readManifest(path.join(base, d));
      return kernel ? [{ dir: path.join(base, d), kernel }] : [];
    });
}

/** Marks a version in use: a run that resolves a newer one must not delete it under us. */
function markInUse(dir: string): void {
  const now = new Date();
  utimesSync(dir, now, now);
}

const IN_USE_MS = 24 * 3600_000;

/** A version directory (not a staging one) that a run prepared within the last day. */
function usedRecently(name: string, dir: string): boolean {
  if (name.startsWith(".")) return false;
  try {
    return Date.now() - statSync(dir).mtimeMs < IN_USE_MS;
  } catch {
    return false;
  }
}

function stagingInUse(dir: string): boolean {
  const pid = /^\.staging-(\d+)$/.exec(dir)?.[1];
  if (!pid) return false;
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch {
    return false;
  }
}

const prepared = new Map<KernelName, PreparedKernel>();

/**
 * Resolve the newest version of a kernel and return its cached extraction, downloading it if needed.
 * RINGFENCE_VM_OFFLINE=1 skips apt and uses the newest cached extraction.
 * Any failure is thrown: a kernel of the matrix is never skipped silently.
 */
export function prepareKernel(name: KernelName): PreparedKernel {
  const known = prepared.get(name);
  if (known) return known;
  const base = kernelRoot(name);
  let kernel: PreparedKernel | undefined;
  if (process.env.RINGFENCE_VM_OFFLINE === "1") {
    const cached = cachedKernels(name);
    kernel = newest(cached.map((c) => c.kernel));
    if (!kernel) throw new Error(`kernel ${name}: RINGFENCE_VM_OFFLINE=1 but nothing whole cached in ${base}`);
    // An online run that resolves a newer version deletes versions unused for a day (review by helper-122).
    markInUse(cached.find((c) => c.kernel === kernel)!.dir);
  } else {
    const resolved = name === "lts" ? resolveLts() : resolveRestricted();
    const version = resolved.packages[0]!.version;
    const final = path.join(base, version.replace(/[^0-9A-Za-z.+-]/g, "_"));
    kernel = readManifest(final);
    if (kernel?.version !== version) {
      const staging = path.join(base, `.staging-${process.pid}`);
      rmSync(staging, { recursive: true, force: true });
      try {
        kernel = extract(name, resolved, staging, final);
        writeFileSync(path.join(staging, MANIFEST), `${JSON.stringify(kernel, null, 2)}\n`);
        if (readManifest(final)?.version === version) rmSync(staging, { recursive: true, force: true }); // a concurrent run won
        else {
          rmSync(final, { recursive: true, force: true });
          try {
            renameSync(staging, final);
          } catch (e) {
            // A concurrent run renamed its own extraction in between: use that one.
            if (readManifest(final)?.version !== version) throw e;
            rmSync(staging, { recursive: true, force: true });
          }
        }
      } catch (e) {
        rmSync(staging, { recursive: true, force: true });
        throw new Error(`kernel ${name} (${resolved.packages.map((p) => `${p.name}=${p.version}`).join(" ")}): ${String(e)}`);
      }
    }
    markInUse(final);
    // Older versions are dead weight (100+ MB each), as are staging dirs of runs that died; a
    // version another run used within the day may still be mounted in its guest (found by review).
    for (const d of readdirSync(base)) {
      const dir = path.join(base, d);
      if (dir !== final && !stagingInUse(d) && !usedRecently(d, dir)) rmSync(dir, { recursive: true, force: true });
    }
  }
  prepared.set(name, kernel);
  return kernel;
}
