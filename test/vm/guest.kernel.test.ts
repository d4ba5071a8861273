// Smoke test of the test bed itself: the guest runs the kernel it claims to, AF_ALG works, and
// the kernel's own module autoloading finds this kernel's modules. Uses python3's AF_ALG support
// so it does not depend on the project's native-ffi layer.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { release } from "node:os";
import { describe, expect, it } from "vitest";

const kernel = process.env.RINGFENCE_KERNEL;
const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

interface BindResult {
  ok: boolean;
  errno?: string;
  digest?: string;
}

/** Bind an AF_ALG socket in a child python3; for hashes, digest `data` through it. */
function afAlg(type: string, name: string, data?: string): BindResult {
  const script = `
import errno, json, socket, sys
s = socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0)
try:
    s.bind((sys.argv[1], sys.argv[2]))
except OSError as e:
    print(json.dumps({"ok": False, "errno": errno.errorcode[e.errno]})); sys.exit(0)
out = {"ok": True}
if len(sys.argv) > 3:
    c, _ = s.accept(); c.sendall(sys.argv[3].encode()); out["digest"] = c.recv(64).hex()
print(json.dumps(out))
`;
  const args = ["-c", script, type, name, ...(data === undefined ? [] : [data])];
  return JSON.parse(execFileSync(python, args, { encoding: "utf8" })) as BindResult;
}

describe(`guest kernel ${kernel} (${release()})`, () => {
  it("runs the kernel the host prepared", () => {
    expect(release()).toBe(process.env.RINGFENCE_KERNEL_RELEASE);
    if (kernel === "lts") expect(release()).toMatch(/^6\.12\.\d+\+deb12-amd64$/);
    else {
      expect(kernel).toBe("restricted");
      const [major, minor] = release().split(/[.-]/).map(Number) as [number, number];
      expect(major > 7 || (major === 7 && minor >= 3)).toBe(true);
    }
  });

  it("loaded deploy/modules-load.d/ringfence.conf", () => {
    expect(process.env.RINGFENCE_MODULES_LOAD_FAILED).toBe("");
    for (const m of ["af_alg", "algif_aead", "algif_hash", "algif_skcipher"]) expect(existsSync(`/sys/module/${m}`)).toBe(true);
  });

  it("computes sha256 over AF_ALG like node:crypto", () => {
    const data = "ringfence test bed";
    const r = afAlg("hash", "sha256", data);
    expect(r).toEqual({ ok: true, digest: createHash("sha256").update(data).digest("hex") });
  });

  if (kernel === "lts") it("lts: no af_alg_restrict, gcm(aes) binds and its module is autoloaded", () => {
    expect(existsSync("/proc/sys/crypto/af_alg_restrict")).toBe(false);
    expect(afAlg("aead", "gcm(aes)")).toEqual({ ok: true });
    // request_module("crypto-gcm(aes)") ran /sbin/modprobe against this kernel's modules.
    expect(existsSync("/sys/module/gcm")).toBe(true);
  });

  if (kernel === "restricted") it("restricted: af_alg_restrict=1 and gcm(aes) is refused even to root", () => {
    expect(process.getuid?.()).toBe(0);
    expect(readFileSync("/proc/sys/crypto/af_alg_restrict", "utf8").trim()).toBe("1");
    expect(afAlg("aead", "gcm(aes)")).toEqual({ ok: false, errno: "ENOENT" });
    expect(afAlg("aead", "ccm(aes)")).toEqual({ ok: true });
  });
});
