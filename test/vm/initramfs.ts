// The guest's initramfs: static busybox, this kernel's 9p modules (uncompressed, in load order)
// and the two boot scripts in guest/. Cached per kernel release and content hash (this file's
// and cpio.ts's source included).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { cachePath } from "./cache-dir.js";
import { cpioNewc, type CpioEntry } from "./cpio.js";
import type { PreparedKernel } from "./kernels.js";

const GUEST_DIR = new URL("./guest/", import.meta.url).pathname;
const BUSYBOX = "/bin/busybox";
/**
 * What init.sh insmods; their dependencies (netfs, 9pnet) are added from modules.dep.
 * overlay: only used when the host has no /lib/modules to mount over (see init.sh).
 */
const NEEDED = ["9pnet_virtio", "9p", "overlay"];

const modName = (file: string) => path.basename(file).replace(/\.ko(\.xz|\.gz|\.zst)?$/, "").replace(/-/g, "_");

/** Module names in insmod order, dependencies first; built-in modules are left out. */
export function loadOrder(kernel: PreparedKernel, wanted: readonly string[] = NEEDED): { name: string; file: string }[] {
  const dir = path.join(kernel.modulesDir, kernel.release);
  const deps = new Map<string, { file: string; deps: string[] }>();
  for (const line of readFileSync(path.join(dir, "modules.dep"), "utf8").split("\n")) {
    const [file, rest] = line.split(":");
    if (file) deps.set(modName(file), { file, deps: (rest ?? "").trim().split(/\s+/).filter(Boolean).map(modName) });
  }
  const builtin = new Set(readFileSync(path.join(dir, "modules.builtin"), "utf8").split("\n").filter(Boolean).map(modName));
  const order: { name: string; file: string }[] = [];
  const visit = (name: string) => {
    if (order.some((m) => m.name === name) || builtin.has(name)) return;
    const entry = deps.get(name);
    if (!entry) throw new Error(`kernel ${kernel.release}: module ${name} is neither in modules.dep nor built in`);
    entry.deps.forEach(visit);
    order.push({ name, file: path.join(dir, entry.file) });
  };
  wanted.forEach((w) => visit(w.replace(/-/g, "_")));
  return order;
}

function decompressModule(file: string): Buffer {
  if (file.endsWith(".xz")) {
    const r = spawnSync("xz", ["-dc", file], { maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`xz -dc ${file} failed: ${r.error?.message ?? r.stderr.toString()}`);
    return r.stdout;
  }
  if (file.endsWith(".gz")) return gunzipSync(readFileSync(file));
  if (file.endsWith(".zst")) throw new Error(`${file}: zstd-compressed modules are not supported`);
  return readFileSync(file);
}

/** A dynamically linked busybox (package `busybox`) would find no libc in the initramfs. */
function assertStatic(file: string): Buffer {
  if (!existsSync(file)) throw new Error(`${file} not found: install the busybox-static package`);
  const elf = readFileSync(file);
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  for (let i = 0; i < elf.readUInt16LE(0x38); i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) {
      throw new Error(`${file} is dynamically linked: install busybox-static instead of busybox`);
    }
  }
  return elf;
}

export function buildInitramfs(kernel: PreparedKernel): string {
  const busybox = assertStatic(BUSYBOX);
  const init = readFileSync(path.join(GUEST_DIR, "init.sh"));
  const stage2 = readFileSync(path.join(GUEST_DIR, "stage2.sh"));
  const modules = loadOrder(kernel);
  const hash = createHash("sha256");
  // This builder and the cpio writer are part of the content: a change to either rebuilds.
  const ext = path.extname(new URL(import.meta.url).pathname); // .ts under tsx, .js if compiled
  const builders = [new URL(import.meta.url), new URL(`./cpio${ext}`, import.meta.url)].map((u) => readFileSync(u));
  for (const part of [busybox, init, stage2, ...builders, ...modules.map((m) => m.file)]) hash.update(part).update("\0");
  const out = path.join(cachePath("initramfs"), `${kernel.release}-${hash.digest("hex").slice(0, 16)}.cpio.gz`);
  if (existsSync(out)) return out;

  const entries: CpioEntry[] = [
    ...["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "newroot", "modules"].map(
      (d): CpioEntry => ({ type: "dir", path: d }),
    ),
    // The kernel opens /dev/console for init before anything is mounted.
    { type: "chardev", path: "dev/console", major: 5, minor: 1 },
    { type: "file", path: "bin/busybox", data: busybox, mode: 0o755 },
    { type: "symlink", path: "bin/sh", target: "busybox" },
    { type: "file", path: "init", data: init, mode: 0o755 },
    { type: "file", path: "stage2.sh", data: stage2 },
    ...modules.map((m): CpioEntry => ({ type: "file", path: `modules/${m.name}.ko`, data: decompressModule(m.file) })),
    { type: "file", path: "modules/load-order", data: Buffer.from(modules.map((m) => `${m.name}\n`).join("")) },
  ];
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, cpioNewc(entries));
  renameSync(tmp, out);
  return out;
}
