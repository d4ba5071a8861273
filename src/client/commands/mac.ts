/**
 * `ringfence mac | verify | hash | random`. MACs are over at most 1 MiB (unary ComputeMac /
 * VerifyMac); hashes stream input of any size through HashStream. MACs and digests print as
 * lowercase hex; `verify` prints "valid" or "invalid" and exits 1 when invalid, for scripts.
 */
import { HASH_ALGORITHM_NAMES, hashAlgorithmName, MAX_CHUNK_BYTES } from '../sdk/index.js';
import { CommandError, MiB, parseChoice, parseHex, parseInteger, parseKeyName, UsageError } from './args.js';
import { str, type CommandSpec, type Context, type Values } from './command.js';
import { openInput, openOutput, writeAll } from './io.js';
import { startProgress } from './progress.js';
import { streamPieceBytes } from './streaming.js';

/** The daemon's default Limits.max_payload_bytes, the most ComputeMac and VerifyMac take. */
const MAC_LIMIT = MiB;

async function readSmall(ctx: Context, v: Values): Promise<Buffer> {
  const input = openInput(str(v, 'in'), ctx.io.stdin);
  const head = await input.readHead(MAC_LIMIT);
  input.close();
  if (!head.complete) throw new CommandError(`${input.label} is larger than ${MAC_LIMIT / MiB} MiB, the most a MAC covers (MAC a digest of it instead: ringfence hash | ringfence mac)`);
  return head.bytes;
}

async function mac(ctx: Context, args: string[], v: Values): Promise<number> {
  const keyName = parseKeyName(args[0]!);
  const data = await readSmall(ctx, v);
  const res = await ctx.client().computeMac(keyName, data);
  const hex = Buffer.from(res.mac).toString('hex');
  if (ctx.json) ctx.printJson({ mac: hex, key: res.keyName, version: res.keyVersion });
  else ctx.print(hex);
  return 0;
}

async function verify(ctx: Context, args: string[], v: Values): Promise<number> {
  const keyName = parseKeyName(args[0]!);
  const macHex = str(v, 'mac');
  if (macHex === undefined) throw new UsageError('verify needs --mac HEX (the MAC to check)');
  const expected = parseHex(macHex, '--mac');
  const kv = str(v, 'key-version');
  const keyVersion = kv === undefined ? undefined : parseInteger(kv, '--key-version', 1, 0xffffffff);
  const data = await readSmall(ctx, v);
  const res = await ctx.client().verifyMac(keyName, data, expected, { keyVersion });
  if (ctx.json) ctx.printJson({ valid: res.valid, key: res.keyName, version: res.keyVersion });
  else ctx.print(res.valid ? 'valid' : 'invalid');
  return res.valid ? 0 : 1;
}

async function hash(ctx: Context, args: string[], v: Values): Promise<number> {
  const alg = parseChoice(str(v, 'alg') ?? 'sha256', '--alg', HASH_ALGORITHM_NAMES);
  const input = openInput(args[0], ctx.io.stdin);
  const progress = startProgress('hash', input.size, ctx.io.stderr);
  async function* counted() {
    for await (const chunk of input.rest()) {
      progress?.add(chunk.length);
      yield chunk as Buffer;
    }
  }
  let res;
  try {
    res = await ctx.client().hashStream(counted(), alg, { pieceBytes: await streamPieceBytes(ctx, MAX_CHUNK_BYTES) });
  } finally {
    progress?.done();
    input.close();
  }
  const hex = Buffer.from(res.digest).toString('hex');
  if (ctx.json) ctx.printJson({ digest: hex, algorithm: hashAlgorithmName(res.algorithm) ?? alg, bytes: Number(res.dataBytes) });
  else ctx.print(hex);
  return 0;
}

async function random(ctx: Context, args: string[]): Promise<number> {
  const n = parseInteger(args[0]!, 'N', 1, MiB);
  ctx.refuseBinaryToTerminal(undefined, 'raw random bytes', 'a pipe or file redirection, or --json (base64)');
  const res = await ctx.client().generateRandom(n);
  if (ctx.json) ctx.printJson({ data: Buffer.from(res.data).toString('base64') });
  else await writeAll(openOutput(undefined, ctx.io.stdout), res.data);
  return 0;
}

export const macCommands: CommandSpec[] = [
  {
    name: 'mac',
    synopsis: 'mac KEY [-i FILE]',
    summary: 'the MAC (hex) of stdin or FILE, at most 1 MiB',
    options: ['in'],
    args: ['KEY'],
    what: (a) => `compute a MAC with key ${a[0]}`,
    run: mac,
  },
  {
    name: 'verify',
    synopsis: 'verify KEY --mac HEX [--key-version N] [-i FILE]',
    summary: 'check a MAC: prints "valid" (exit 0) or "invalid" (exit 1)',
    options: ['mac', 'key-version', 'in'],
    args: ['KEY'],
    what: (a) => `verify a MAC with key ${a[0]}`,
    run: verify,
  },
  {
    name: 'hash',
    synopsis: 'hash [--alg A] [FILE]',
    summary: `the digest (hex) of FILE or stdin, any size; A: ${HASH_ALGORITHM_NAMES.join(' ')} (default sha256)`,
    options: ['alg'],
    args: ['FILE?'],
    what: (a) => `hash ${a[0] ?? 'stdin'}`,
    run: hash,
  },
  {
    name: 'random',
    synopsis: 'random N',
    summary: 'N random bytes (1 to 1048576) from the kernel, raw (base64 with --json)',
    options: [],
    args: ['N'],
    what: (a) => `random ${a[0]}`,
    run: random,
  },
];
