export * from './syscall-error.js';
export * as keyctl from './keyctl.js';
export * as afAlg from './af-alg.js';
export { getRandom } from './random.js';
export { peerCred, peerGroups, type PeerCred } from './peer-cred.js';
export { sdNotify } from './sd-notify.js';
export { tryLockExclusive } from './file-lock.js';
export { isDumpable, setDumpable } from './dumpable.js';
