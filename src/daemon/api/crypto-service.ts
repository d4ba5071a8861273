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
import { clientStreaming, unary, type HandlerDeps } from './handler.js';
import { sessionHandler } from './session.js';
import { decryptStreamHandler, encryptStreamHandler } from './stream-handlers.js';

export function cryptoServiceHandlers(ctx: OpContext, deps: HandlerDeps): grpc.UntypedServiceImplementation {
  const m = CryptoService.method;
  return {
    encrypt: unary(m.encrypt, deps, (req) => encrypt(ctx, req)),
    decrypt: unary(m.decrypt, deps, (req) => decrypt(ctx, req)),
    reEncrypt: unary(m.reEncrypt, deps, (req) => reEncrypt(ctx, req)),
    generateDataKey: unary(m.generateDataKey, deps, (req) => generateDataKey(ctx, req)),
    computeMac: unary(m.computeMac, deps, (req) => computeMac(ctx, req)),
    verifyMac: unary(m.verifyMac, deps, (req) => verifyMac(ctx, req)),
    hash: unary(m.hash, deps, (req) => hash(ctx, req)),
    hashStream: clientStreaming(m.hashStream, deps, (messages) => hashStream(ctx, messages)),
    generateRandom: unary(m.generateRandom, deps, (req) => generateRandom(ctx, req)),
    batchEncrypt: unary(m.batchEncrypt, deps, (req) => batchEncrypt(ctx, req)),
    batchDecrypt: unary(m.batchDecrypt, deps, (req) => batchDecrypt(ctx, req)),
    batchComputeMac: unary(m.batchComputeMac, deps, (req) => batchComputeMac(ctx, req)),
    encryptStream: encryptStreamHandler(ctx, deps),
    decryptStream: decryptStreamHandler(ctx, deps),
    session: sessionHandler(ctx, deps),
  };
}
