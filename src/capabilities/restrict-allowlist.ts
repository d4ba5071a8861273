/**
 * What af_alg_restrict=1 still lets a privileged process bind, by AF_ALG type. Read from the
 * algif_aead, algif_hash and algif_skcipher modules of Debian's linux-modules-7.3-amd64
 * 7.3~rc7-1~exp1 (`xz -dc algif_hash.ko.xz | strings`; the names next to af_alg_check_restriction).
 * A later kernel may change the lists: the probe uses them only to tell "refused under
 * af_alg_restrict" from "not in this kernel" when bind() says ENOENT, never to decide what to use.
 */
import type { KernelAlg } from './suites.js';

const ALLOWED: Readonly<Partial<Record<KernelAlg['type'], ReadonlySet<string>>>> = {
  aead: new Set(['ccm(aes)']),
  hash: new Set(['cmac(aes)', 'hmac(md5)', 'hmac(sha1)', 'hmac(sha224)', 'hmac(sha256)', 'hmac(sha384)', 'hmac(sha512)', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512']),
  skcipher: new Set([
    'adiantum(xchacha12,aes)',
    'adiantum(xchacha20,aes)',
    'cbc(aes)',
    'cbc(des)',
    'cbc(des3_ede)',
    'cbc(paes)',
    'ctr(aes)',
    'ecb(aes)',
    'ecb(des)',
    'hctr2(aes)',
    'xts(aes)',
    'xts(camellia)',
    'xts(serpent)',
    'xts(twofish)',
  ]),
};

/** Whether Linux 7.3's af_alg_restrict=1 allows `alg` to a privileged process. */
export function allowedWhenRestricted(alg: KernelAlg): boolean {
  return ALLOWED[alg.type]?.has(alg.name) ?? false;
}
