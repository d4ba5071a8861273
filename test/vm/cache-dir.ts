// Where downloaded kernels and built initramfs images live.
// The guest sees the host root read-only over 9p, except that its /tmp and /run are fresh
// tmpfs mounts: kernel modules cached there would be invisible to the guest's modprobe.
import { mkdirSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

/** Host paths that the guest shadows with its own mounts. */
export const GUEST_HIDDEN = ["/tmp", "/run", "/proc", "/sys", "/dev"] as const;

export function hiddenInGuest(p: string): string | undefined {
  return GUEST_HIDDEN.find((h) => p === h || p.startsWith(`${h}/`));
}

let cached: string | undefined;

export function cacheDir(): string {
  if (cached) return cached;
  const configured = process.env.RINGFENCE_VM_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache");
  const dir = path.resolve(configured || path.join(base, "ringfence-vm"));
  mkdirSync(dir, { recursive: true });
  // Resolve symlinks: a cache reached through a link into /tmp is still under /tmp.
  const real = realpathSync(dir);
  const hidden = hiddenInGuest(real);
  if (hidden) {
    throw new Error(
      `ringfence-vm cache dir ${real} is under ${hidden}, which the guest replaces with its own mount, ` +
        `so the guest could not see the kernel modules. Set RINGFENCE_VM_CACHE to a directory elsewhere ` +
        `(default: \${XDG_CACHE_HOME:-$HOME/.cache}/ringfence-vm).`,
    );
  }
  cached = real;
  return real;
}

export function cachePath(...parts: string[]): string {
  const p = path.join(cacheDir(), ...parts);
  mkdirSync(p, { recursive: true });
  return p;
}
