/** CryptoService: unary and batch RPCs map one-to-one onto src/daemon/ops; streams and the session have their own modules. */
import type * as grpc from '@grpc/grpc-js';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import type { OpContext } from '../ops/context.js';
import { encrypt } from '../ops/encrypt.js';
import { decrypt } from '../ops/decrypt.js';
import { reEncrypt } from '../ops/reencrypt.js';
import { generateDataKey } from '../ops/generate-data-key.js';
import { computeMac, verifyMac } from '../ops/mac.js';
import { hash, hashStream } from '../ops/hash.js';
import { generateRandom } from '../ops/random.js';
import { batchComputeMac, batchDecrypt, batchEncrypt } from '../ops/batch.js';
import { callContext, clientStreaming, unary, type HandlerDeps } from './handler.js';
import { sessionHandler } from './session.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';

export function cryptoServiceHandlers(ctx: OpContext, deps: HandlerDeps): grpc.UntypedServiceImplementation {
  const m = CryptoService.method;
  return {
    // Every operation checks the caller's access itself (ctx.authorize), so batch items are checked one by one.
    encrypt: unary(m.encrypt, deps, (req, a) => encrypt(callContext(ctx, a), req)),
    decrypt: unary(m.decrypt, deps, (req, a) => decrypt(callContext(ctx, a), req)),
    reEncrypt: unary(m.reEncrypt, deps, (req, a) => reEncrypt(callContext(ctx, a), req)),
    generateDataKey: unary(m.generateDataKey, deps, (req, a) => generateDataKey(callContext(ctx, a), req)),
    computeMac: unary(m.computeMac, deps, (req, a) => computeMac(callContext(ctx, a), req)),
    verifyMac: unary(m.verifyMac, deps, (req, a) => verifyMac(callContext(ctx, a), req)),
    hash: unary(m.hash, deps, (req, a) => hash(callContext(ctx, a), req)),
    hashStream: clientStreaming(m.hashStream, deps, (messages, a) => hashStream(callContext(ctx, a), messages)),
    generateRandom: unary(m.generateRandom, deps, (req, a) => generateRandom(callContext(ctx, a), req)),
    batchEncrypt: unary(m.batchEncrypt, deps, (req, a) => batchEncrypt(callContext(ctx, a), req)),
    batchDecrypt: unary(m.batchDecrypt, deps, (req, a) => batchDecrypt(callContext(ctx, a), req)),
    batchComputeMac: unary(m.batchComputeMac, deps, (req, a) => batchComputeMac(callContext(ctx, a), req)),
    encryptStream: encryptStreamHandler(ctx, deps),
    decryptStream: decryptStreamHandler(ctx, deps),
    session: sessionHandler(ctx, deps),
  };
}
