/**
 * The crypto engine: typed operations on kernel-held keys. It caches one keyed transform per
 * (algorithm, key serial, tag size), each with a bounded pool of operation sockets, and never holds
 * key bytes. Suite constructions (nonce layout, encrypt-then-MAC) live in suite-ops.ts.
 */
import { timingSafeEqual } from 'node:crypto';
import { AlgOp } from '../../../native-ffi/af-alg.js';
import type { KernelAlg } from '../../capabilities/suites.js';
import { EngineError } from './errors.js';
import { isStreamed, runDigest, runRequest } from './request.js';
import { Transform, type TransformSpec } from './transform.js';

export interface EngineOptions {
  /** Keyed transforms kept open (least recently used closed beyond this). */
  maxTransforms: number;
  /** Operation sockets per transform, i.e. concurrent requests per key. */
  maxOpSockets: number;
  /** Requests that may wait for one transform's operation sockets; more are refused (BUSY). */
  maxQueuedRequests: number;
  /**
   * Of maxQueuedRequests, how many one caller may have waiting for one transform: 1024, a quarter of
   * the default 4096. Not derived here: with maxQueuedRequests set lower and this left alone, one
   * caller may fill the whole queue (FairQueue bounds it by the total); the daemon's config derives
   * it (a quarter of maxQueuedRequests unless set; engine-options.ts).
   */
  maxQueuedRequestsPerCaller: number;
  /** Digests fed by a stream (HashStream) at once, each holding a socket of its own; more are refused (BUSY). */
  maxDigestStreams: number;
  /** Largest AEAD/skcipher request (plaintext or ciphertext plus AAD). */
  maxRequestBytes: number;
  /** Requests up to this many bytes (in + out) run synchronously; larger ones on the libuv pool. */
  asyncThresholdBytes: number;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  maxTransforms: 512,
  maxOpSockets: 8,
  maxQueuedRequests: 4096,
  maxQueuedRequestsPerCaller: 1024,
  maxDigestStreams: 256,
  maxRequestBytes: 4 * 1024 * 1024,
  asyncThresholdBytes: 16 * 1024,
};

export type DigestInput = Buffer | readonly Buffer[] | AsyncIterable<Buffer> | Iterable<Buffer>;

/**
 * `out` after its first `lead` bytes (the associated data the kernel copies in front). A view keeps
 * all of `out` alive, so where the lead is the larger part (a stream chunk of a few bytes under
 * 64 KiB of associated data) the rest is copied out and `out` wiped: a DecryptStream message of
 * 32,000 such chunks held 2 GB while the memory budget counted 2 MB (review by helper-94).
 */
function withoutLead(out: Buffer, lead: number): Buffer {
  const rest = out.subarray(lead);
  if (lead <= rest.length) return rest;
  const copy = Buffer.from(rest);
  out.fill(0);
  return copy;
}

/** What every caller's view of one engine shares. */
interface EngineState {
  readonly transforms: Map<string, Transform>;
  digestStreams: number;
}

export class CryptoEngine {
  readonly options: EngineOptions;
  private readonly state: EngineState;

  /**
   * `owner` is whose requests this view makes (forCaller): requests waiting for a busy key are
   * served in turns across owners. The daemon's own work (key wrapping, fingerprints) is ''.
   */
  constructor(options: Partial<EngineOptions> = {}, readonly owner = '', state?: EngineState) {
    // A view (forCaller, one per call) takes its engine's options as they are: merging them again
    // would copy them on every call, most of what a view costs.
    this.options = state ? (options as EngineOptions) : { ...DEFAULT_ENGINE_OPTIONS, ...options };
    this.state = state ?? { transforms: new Map(), digestStreams: 0 };
  }

  /** This engine (same transforms, same limits) making requests on behalf of `owner` (a caller's uid key). */
  forCaller(owner: string): CryptoEngine {
    return owner === this.owner ? this : new CryptoEngine(this.options, owner, this.state);
  }

  private get transforms(): Map<string, Transform> {
    return this.state.transforms;
  }

  /**
   * AEAD encryption: returns ciphertext || tag, preceded by `headroom` bytes of scratch (not zeroed:
   * they may hold associated data) for the caller to overwrite, e.g. with a ciphertext header, so
   * the sealed bytes need no copy. The kernel returns AAD || ciphertext || tag: the headroom is
   * the AAD's tail, plus zeroed lead bytes when the AAD is shorter.
   */
  async aeadEncrypt(alg: KernelAlg, serial: number, tagBytes: number, iv: Buffer, aad: Buffer, plaintext: Buffer, headroom = 0): Promise<Buffer> {
    const tfm = this.transform({ alg, serial, authSize: tagBytes });
    const lead = Math.max(0, headroom - aad.length);
    const out = await runRequest(tfm, this.options, { op: AlgOp.ENCRYPT, iv, assocLen: aad.length }, [aad, plaintext], aad.length + plaintext.length + tagBytes, lead, this.owner);
    return withoutLead(out, lead + aad.length - headroom);
  }

  /** AEAD decryption of ciphertext || tag; EngineError AUTHENTICATION_FAILED when the tag does not verify. */
  async aeadDecrypt(alg: KernelAlg, serial: number, tagBytes: number, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    if (sealed.length < tagBytes) {
      throw new EngineError('AUTHENTICATION_FAILED', `${alg.name}: ciphertext shorter than its ${tagBytes}-byte tag`);
    }
    const tfm = this.transform({ alg, serial, authSize: tagBytes });
    const out = await runRequest(tfm, this.options, { op: AlgOp.DECRYPT, iv, assocLen: aad.length }, [aad, sealed], aad.length + sealed.length - tagBytes, 0, this.owner);
    return withoutLead(out, aad.length);
  }

  /** A raw symmetric cipher (e.g. ctr(aes)); output length equals input length. */
  async skcipher(alg: KernelAlg, serial: number, encrypt: boolean, iv: Buffer, data: Buffer): Promise<Buffer> {
    if (data.length === 0) return Buffer.alloc(0);
    const tfm = this.transform({ alg, serial });
    return runRequest(tfm, this.options, { op: encrypt ? AlgOp.ENCRYPT : AlgOp.DECRYPT, iv }, [data], data.length, 0, this.owner);
  }

  /** A hash, or a keyed hash (HMAC) when `serial` is given. */
  async digest(alg: KernelAlg, serial: number | undefined, digestBytes: number, data: DigestInput): Promise<Buffer> {
    const tfm = this.transform(serial === undefined ? { alg } : { alg, serial });
    if (!isStreamed(data)) return runDigest(tfm, this.options, data, digestBytes, this.owner);
    if (this.state.digestStreams >= this.options.maxDigestStreams) {
      throw new EngineError('BUSY', `${this.state.digestStreams} hash streams are open, the daemon's limit; finish one or retry later`, { limit: 'hash_streams' });
    }
    this.state.digestStreams++;
    try {
      return await runDigest(tfm, this.options, data, digestBytes, this.owner);
    } finally {
      this.state.digestStreams--;
    }
  }

  /** Digests being fed by a stream now. */
  get openDigestStreams(): number {
    return this.state.digestStreams;
  }

  /** Constant-time MAC comparison of the full-length MAC, or of a truncation the caller presents. */
  async verifyDigest(alg: KernelAlg, serial: number, digestBytes: number, data: DigestInput, mac: Buffer, minBytes = digestBytes): Promise<boolean> {
    const expected = await this.digest(alg, serial, digestBytes, data);
    if (mac.length < minBytes || mac.length > expected.length) return false;
    return timingSafeEqual(expected.subarray(0, mac.length), mac);
  }

  /** The transform for a spec, opened and keyed on first use. */
  transform(spec: TransformSpec): Transform {
    const id = `${spec.alg.type}|${spec.alg.name}|${spec.serial ?? ''}|${spec.authSize ?? ''}`;
    let tfm = this.transforms.get(id);
    if (tfm) {
      // Re-insert: Map order is our LRU order.
      this.transforms.delete(id);
      this.transforms.set(id, tfm);
    } else {
      tfm = new Transform(spec, this.options);
      this.transforms.set(id, tfm);
    }
    // Busy transforms cannot be closed: after a burst over many keys the cache shrinks back here,
    // on the next requests, as they go idle.
    while (this.transforms.size > this.options.maxTransforms && this.evictOne(id));
    return tfm;
  }

  /** Closes the least recently used idle transform other than `keep` (the one in use now); false if none is idle. */
  private evictOne(keep: string): boolean {
    for (const [id, tfm] of this.transforms) {
      if (id !== keep && tfm.inUse === 0) {
        this.transforms.delete(id);
        tfm.close();
        return true;
      }
    }
    return false;
  }

  /**
   * Closes every transform keyed by `serial`. Call when a key is destroyed: a keyed transform keeps
   * its own copy of the key schedule, so revoking the kernel key alone would not stop it.
   */
  forgetKey(serial: number): void {
    for (const [id, tfm] of this.transforms) {
      if (tfm.spec.serial === serial) {
        this.transforms.delete(id);
        tfm.close();
      }
    }
  }

  get openTransforms(): number {
    return this.transforms.size;
  }

  close(): void {
    for (const tfm of this.transforms.values()) tfm.close();
    this.transforms.clear();
  }
}
