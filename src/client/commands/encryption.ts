/**
 * `ringfence encrypt | decrypt | reencrypt | datakey`. Inputs and outputs are raw bytes (files or
 * stdin/stdout); ciphertexts are binary unless they came in as text. Up to 1 MiB (the daemon's
 * unary limit) encrypt uses one Encrypt call; more goes through EncryptStream without ever being
 * held in memory. decrypt tells the kinds apart by their header.
 */
import { ciphertextToText, DEFAULT_CHUNK_BYTES, ErrorReason, isRingfenceError } from '../sdk/index.js';
import { addHint, CommandError, MiB, parseInteger, parseKeyName, UsageError } from './args.js';
import { readCiphertext, STREAM_FORMAT } from './ciphertext-input.js';
import { str, type CommandSpec, type Context, type Values } from './command.js';
import { openInput, openOutput, writeAll, type Input, type Output } from './io.js';
import { checkOutput } from './output-target.js';
import { runStream, streamPieceBytes } from './streaming.js';

/** The daemon's default Limits.max_payload_bytes: larger inputs are streamed. A daemon configured
 * lower answers PAYLOAD_TOO_LARGE, and encrypt then streams instead. */
export const UNARY_LIMIT = MiB;

const aadOf = (v: Values) => {
  const aad = str(v, 'aad');
  // Node decodes each argument as UTF-8 and turns every byte that is not into U+FFFD: distinct
  // binary values would bind as the same associated data (review by helper-106).
  if (aad?.includes('\ufffd')) throw new UsageError('--aad must be UTF-8 text: it holds bytes that are not (or U+FFFD), which would not be passed on as given; for binary associated data use the SDK');
  return aad === undefined ? undefined : Buffer.from(aad, 'utf8');
};

/**
 * A ciphertext sealed with associated data fails authentication when decrypted without it or with
 * another: the daemon cannot tell that from tampering, but whether --aad was given is known here.
 * Never quotes the --aad given (associated data is not echoed anywhere).
 */
function aadHint(err: unknown, associatedData: Buffer | undefined): never {
  if (isRingfenceError(err) && err.reason === ErrorReason.AUTHENTICATION_FAILED) {
    addHint(
      err,
      associatedData === undefined
        ? 'no --aad was given: if it was encrypted with --aad, give the same text'
        : 'check --aad: it must be the text given at encryption, and left out if none was given',
    );
  }
  throw err;
}

const tooLarge = (err: unknown) => isRingfenceError(err) && err.reason === ErrorReason.PAYLOAD_TOO_LARGE && err.metadata.field !== 'associated_data';

// Exit 1, not 2 (usage): it depends on the input, as mac's size limit does (review by helper-117).
const JSON_NEEDS_SMALL = `--json needs input of at most ${UNARY_LIMIT / MiB} MiB (larger input is stream-encrypted to binary output)`;

async function encrypt(ctx: Context, args: string[], v: Values): Promise<number> {
  const keyName = parseKeyName(args[0]!);
  const associatedData = aadOf(v);
  ctx.refuseBinaryToTerminal(str(v, 'out'), 'binary ciphertext', '-o FILE, a pipe, or --json (text form)');
  // Before any RPC (and before reading stdin): a refused -o would throw the encryption away.
  checkOutput(str(v, 'out'));
  const input = openInput(str(v, 'in'), ctx.io.stdin);
  // Refuse before reading when the file is known to be too big.
  if (ctx.json && input.size !== undefined && input.size > UNARY_LIMIT) throw new CommandError(JSON_NEEDS_SMALL);
  const head = await input.readHead(UNARY_LIMIT);
  if (head.complete) {
    let res;
    try {
      res = await ctx.client().encrypt(keyName, head.bytes, { associatedData });
    } catch (err) {
      if (ctx.json || !tooLarge(err)) throw err;
    }
    if (res) {
      if (ctx.json) await ctx.writeJson({ ciphertext: ciphertextToText(res.ciphertext), key: res.keyName, version: res.keyVersion }, str(v, 'out'));
      else await writeAll(openOutput(str(v, 'out'), ctx.io.stdout), res.ciphertext);
      return 0;
    }
  } else if (ctx.json) {
    input.close();
    throw new CommandError(JSON_NEEDS_SMALL);
  }
  const chunkBytes = await streamPieceBytes(ctx, DEFAULT_CHUNK_BYTES);
  const { output, duplex } = await outputThenStream(str(v, 'out'), ctx, () => ctx.client().encryptStream(keyName, { associatedData, chunkBytes }));
  await runStream(ctx, { label: 'encrypt', source: input, size: input.size, duplex, output, produces: 'ciphertext' });
  return 0;
}

/**
 * Opens the output, then the stream. The other order left a stream opened and never consumed when
 * -o was refused, which failed unhandled when the client closed (found by review); an output
 * opened for a stream that could not start is removed.
 */
async function outputThenStream<D>(path: string | undefined, ctx: Context, openStream: () => D): Promise<{ output: Output; duplex: D }> {
  const output = openOutput(path, ctx.io.stdout);
  try {
    return { output, duplex: openStream() };
  } catch (err) {
    await output.abort();
    throw err;
  }
}

async function decrypt(ctx: Context, _args: string[], v: Values): Promise<number> {
  const associatedData = aadOf(v);
  checkOutput(str(v, 'out'));
  const input = openInput(str(v, 'in'), ctx.io.stdin);
  const ct = await readCiphertext(input);
  if (ct.bytes === undefined || ct.format === STREAM_FORMAT) {
    if (ctx.json) {
      input.close();
      throw new CommandError('--json needs a ciphertext from unary encryption; a stream ciphertext decrypts to binary output only');
    }
    const chunkBytes = await streamPieceBytes(ctx, DEFAULT_CHUNK_BYTES);
    const { output, duplex } = await outputThenStream(str(v, 'out'), ctx, () => ctx.client().decryptStream({ associatedData, chunkBytes }));
    const source: Input | Buffer = ct.bytes ?? input;
    await runStream(ctx, { label: 'decrypt', source, size: ct.bytes ? undefined : input.size, duplex, output, produces: 'plaintext' }).catch((err: unknown) => aadHint(err, associatedData));
    return 0;
  }
  // Anything else goes to Decrypt, which names a malformed or unknown format precisely.
  const res = await ctx.client().decrypt(ct.bytes, { associatedData }).catch((err: unknown) => aadHint(err, associatedData));
  try {
    if (ctx.json) await ctx.writeJson({ plaintext: Buffer.from(res.plaintext).toString('base64'), key: res.keyName, version: res.keyVersion }, str(v, 'out'));
    else await writeAll(openOutput(str(v, 'out'), ctx.io.stdout), res.plaintext);
  } finally {
    res.plaintext.fill(0);
  }
  return 0;
}

async function reencrypt(ctx: Context, _args: string[], v: Values): Promise<number> {
  const to = str(v, 'to');
  const destinationKeyName = to === undefined ? undefined : parseKeyName(to);
  const associatedData = aadOf(v);
  checkOutput(str(v, 'out'));
  const input = openInput(str(v, 'in'), ctx.io.stdin);
  const ct = await readCiphertext(input);
  // Binary in, binary out: not to a terminal (text in, text out is fine anywhere).
  if (ct.form !== 'text') ctx.refuseBinaryToTerminal(str(v, 'out'), 'binary ciphertext', '-o FILE, a pipe, or --json (text form)');
  if (ct.bytes === undefined || ct.format === STREAM_FORMAT) {
    input.close();
    throw new CommandError('reencrypt takes a ciphertext from unary encryption; decrypt a stream ciphertext and encrypt it again instead');
  }
  const res = await ctx.client().reEncrypt(ct.bytes, { associatedData, destinationKeyName }).catch((err: unknown) => aadHint(err, associatedData));
  const text = ciphertextToText(res.ciphertext);
  if (ctx.json) {
    await ctx.writeJson({ ciphertext: text, key: res.keyName, version: res.keyVersion, sourceKey: res.sourceKeyName, sourceVersion: res.sourceKeyVersion }, str(v, 'out'));
  } else {
    // The same form as the input: text in, text out.
    await writeAll(openOutput(str(v, 'out'), ctx.io.stdout), ct.form === 'text' ? `${text}\n` : res.ciphertext);
  }
  return 0;
}

async function datakey(ctx: Context, args: string[], v: Values): Promise<number> {
  const keyName = parseKeyName(args[0]!);
  const len = str(v, 'length');
  const lengthBytes = len === undefined ? undefined : parseInteger(len, '--length', 1, 1024);
  const omitPlaintext = v['no-plaintext'] === true;
  const res = await ctx.client().generateDataKey(keyName, { omitPlaintext, associatedData: aadOf(v), lengthBytes });
  try {
    const ciphertext = ciphertextToText(res.ciphertext);
    const plaintext = omitPlaintext ? undefined : Buffer.from(res.plaintext).toString('base64');
    if (ctx.json) ctx.printJson({ ciphertext, ...(plaintext === undefined ? {} : { plaintext }), key: res.keyName, version: res.keyVersion });
    else ctx.print(`ciphertext: ${ciphertext}\n${plaintext === undefined ? '' : `plaintext: ${plaintext}\n`}`);
  } finally {
    res.plaintext.fill(0);
  }
  return 0;
}

export const encryptionCommands: CommandSpec[] = [
  {
    name: 'encrypt',
    synopsis: 'encrypt KEY [--aad TEXT] [-i FILE] [-o FILE]',
    summary: 'encrypt stdin or FILE (any size; over 1 MiB is streamed) to binary ciphertext',
    options: ['aad', 'in', 'out'],
    args: ['KEY'],
    what: (a) => `encrypt with key ${a[0]}`,
    run: encrypt,
  },
  {
    name: 'decrypt',
    synopsis: 'decrypt [--aad TEXT] [-i FILE] [-o FILE]',
    summary: 'decrypt a ciphertext (binary or text form, unary or stream)',
    options: ['aad', 'in', 'out'],
    args: [],
    what: () => 'decrypt',
    run: decrypt,
  },
  {
    name: 'reencrypt',
    synopsis: 'reencrypt [--aad TEXT] [--to KEY] [-i FILE] [-o FILE]',
    summary: "encrypt a ciphertext again under its key's (or KEY's) primary version; same form out",
    options: ['aad', 'to', 'in', 'out'],
    args: [],
    what: () => 'reencrypt',
    run: reencrypt,
  },
  {
    name: 'datakey',
    synopsis: 'datakey KEY [--no-plaintext] [--aad TEXT] [--length N]',
    summary: 'a random data key (default 32 bytes), encrypted under KEY, and in base64',
    options: ['no-plaintext', 'aad', 'length'],
    args: ['KEY'],
    what: (a) => `generate a data key with key ${a[0]}`,
    run: datakey,
  },
];
