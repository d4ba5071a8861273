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

function readManifest(dir: string): PreparedKernel | undefined {
  const file = path.join(dir, MANIFEST);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as PreparedKernel) : undefined;
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
    modulesDir: relocate(path.join(root, modRel)),
  };
}

function cachedKernels(name: KernelName): PreparedKernel[] {
  const base = kernelRoot(name);
  return readdirSync(base)
    .filter((d) => !d.startsWith("."))
    .flatMap((d) => readManifest(path.join(base, d)) ?? []);
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
    kernel = newest(cachedKernels(name));
    if (!kernel) throw new Error(`kernel ${name}: RINGFENCE_VM_OFFLINE=1 but nothing cached in ${base}`);
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
          renameSync(staging, final);
        }
      } catch (e) {
        rmSync(staging, { recursive: true, force: true });
        throw new Error(`kernel ${name} (${resolved.packages.map((p) => `${p.name}=${p.version}`).join(" ")}): ${String(e)}`);
      }
    }
    // Marks this version in use: a run that resolves a newer one must not delete it under us.
    const now = new Date();
    utimesSync(final, now, now);
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
