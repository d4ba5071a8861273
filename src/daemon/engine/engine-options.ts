/**
 * The engine's options from the daemon's configured limits: the one place they meet, so that a
 * limit set in the config file is the one the engine holds requests to.
 */
import { engineRequestBytes, MAX_HASH_STREAMS, type Limits } from '../config.js';
import type { EngineOptions } from './engine.js';

export function engineOptionsFrom(limits: Limits): Partial<EngineOptions> {
  return {
    maxTransforms: limits.maxTransforms,
    maxOpSockets: limits.maxOpSockets,
    maxQueuedRequests: limits.maxQueuedRequests,
    maxQueuedRequestsPerCaller: limits.maxQueuedRequestsPerCaller,
    maxDigestStreams: MAX_HASH_STREAMS,
    maxRequestBytes: engineRequestBytes(limits),
  };
}
