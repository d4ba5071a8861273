/**
 * `ringfence key ...`: create, import, list, show, rotate, disable, enable, delete, cancel-delete.
 * Each prints one line (or the key table / key sheet); with --json, the key as one JSON document
 * ({"keys": [...]} for list).
 */
import { MAX_ROTATION_PERIOD, MAX_WAITING_PERIOD, SUITE_NAMES, type Key } from '../sdk/index.js';
import { CommandError, parseChoice, parseDuration, parseKeyName, UsageError } from './args.js';
import { str, type CommandSpec, type Context, type Values } from './command.js';
import { keyJson, keyTable, keyText } from './format.js';
import { openInput } from './io.js';
import { closeSync, openSync, readSync } from 'node:fs';

const PURPOSES = ['aead', 'mac'] as const;
/** A period longer than the daemon takes (the SDK's bound) is a usage error naming the option. */
function boundedDuration(text: string, option: string, max: { ms: number; text: string }): number {
  const ms = parseDuration(text, option);
  // Checked here, not by the SDK: its RangeError was exit 1 and named "rotationPeriodMs" (review by helper-165).
  if (ms > max.ms) throw new UsageError(`${option}: ${text} is longer than ${max.text}, the most the daemon takes`);
  return ms;
}
/** Raw key length of each suite, to refuse a wrong file before it travels (ImportKeyRequest). */
const KEY_BYTES: Record<string, number> = {
  'aes-256-gcm': 32,
  'chacha20-poly1305': 32,
  'aes-256-ccm': 32,
  'aes-256-ctr-hmac-sha256': 64,
  'hmac-sha256': 32,
  'hmac-sha384': 48,
  'hmac-sha512': 64,
};
/** More than any suite takes: a bigger file is surely not raw key material. */
const MAX_MATERIAL_BYTES = 1024;

const suiteOpt = (v: Values) => {
  const s = str(v, 'suite');
  return s === undefined ? undefined : parseChoice(s, '--suite', SUITE_NAMES);
};
const purposeOpt = (v: Values) => {
  const p = str(v, 'purpose');
  return p === undefined ? undefined : parseChoice(p, '--purpose', PURPOSES);
};

/** Key bytes from FILE or "-" (stdin), checked against the suite's length when one is given. */
async function readMaterial(ctx: Context, from: string, suite: string | undefined): Promise<Buffer> {
  const { bytes, complete } = from === '-' ? await readMaterialStream(ctx) : readMaterialFile(from);
  const label = from === '-' ? 'stdin' : from;
  if (!complete) {
    bytes.fill(0);
    throw new CommandError(`${label} holds more than ${MAX_MATERIAL_BYTES} bytes: key material must be the raw key (32, 48 or 64 bytes)`);
  }
  const expected = suite === undefined ? undefined : KEY_BYTES[suite];
  const lengths = expected === undefined ? [32, 48, 64] : [expected];
  if (!lengths.includes(bytes.length)) {
    const hint = bytes.length > 0 && (bytes[bytes.length - 1] === 0x0a || isHexText(bytes)) ? ' (it must hold raw bytes, not hex or base64 text and no trailing newline)' : '';
    bytes.fill(0);
    throw new CommandError(`${label} holds ${bytes.length} bytes, but ${suite ?? 'a key'} takes ${expected ?? '32, 48 or 64'} bytes of raw key material${hint}`);
  }
  return bytes;
}

/**
 * Hex digits and ASCII white space only. Tested byte by byte: a string made of the bytes (as a
 * regular expression needs) would be a copy of the key the wipe cannot reach.
 */
function isHexText(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    const hex = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
    if (!hex && b !== 0x20 && (b < 0x09 || b > 0x0d)) return false;
  }
  return true;
}

async function readMaterialStream(ctx: Context): Promise<{ bytes: Buffer; complete: boolean }> {
  const input = openInput('-', ctx.io.stdin);
  try {
    return await input.readHead(MAX_MATERIAL_BYTES, true);
  } finally {
    input.close();
  }
}

/**
 * A file is read straight into one buffer this command owns (and wipes): a read stream would read
 * it into a 64 KiB buffer of its own and pass on a copy, leaving the key in memory nobody clears.
 */
function readMaterialFile(path: string): { bytes: Buffer; complete: boolean } {
  const fail = (err: unknown) => new CommandError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fail(err);
  }
  // Buffer.alloc is never a slice of Node's shared pool.
  const buf = Buffer.alloc(MAX_MATERIAL_BYTES + 1);
  let n = 0;
  try {
    for (let r = -1; r !== 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
  } catch (err) {
    buf.fill(0);
    throw fail(err);
  } finally {
    closeSync(fd);
  }
  return { bytes: buf.subarray(0, n), complete: n <= MAX_MATERIAL_BYTES };
}

/** Runs `fn` with the key material, wiping it afterwards whatever happens. */
async function withMaterial<T>(material: Buffer, fn: (m: Buffer) => Promise<T>): Promise<T> {
  try {
    return await fn(material);
  } finally {
    material.fill(0);
  }
}

const name = (args: string[]) => parseKeyName(args[0]!);

function printKey(ctx: Context, key: Key, line: string): number {
  if (ctx.json) ctx.printJson(keyJson(key));
  else ctx.print(line);
  return 0;
}

const describe = (k: Key) => {
  const j = keyJson(k, false);
  return `${j.purpose}, ${j.suite}, ${j.origin === 'generated' ? 'generated in the kernel' : 'imported'}, version ${k.primaryVersion}`;
};

export const keyCommands: CommandSpec[] = [
  {
    name: 'key create',
    synopsis: 'key create NAME [--purpose aead|mac] [--suite S] [--rotate-every DUR]',
    summary: 'create a key whose material the kernel generates',
    options: ['purpose', 'suite', 'rotate-every'],
    args: ['NAME'],
    what: (a) => `create key ${a[0]}`,
    async run(ctx, args, v) {
      const every = str(v, 'rotate-every');
      const rotationPeriodMs = every === undefined ? undefined : boundedDuration(every, '--rotate-every', MAX_ROTATION_PERIOD);
      if (rotationPeriodMs === 0) throw new UsageError('--rotate-every: 0 is no period; leave the option out for a key that rotates only when asked (or at its encryption limit)');
      // Everything parsed before the client exists: usage errors never depend on the socket.
      const keyName = name(args);
      const opts = { purpose: purposeOpt(v), suite: suiteOpt(v), rotationPeriodMs };
      const key = await ctx.client().createKey(keyName, opts);
      return printKey(ctx, key, `created key ${key.name}: ${describe(key)}`);
    },
  },
  {
    name: 'key import',
    synopsis: 'key import NAME --from FILE [--suite S] [--purpose aead|mac]',
    summary: 'import raw key bytes from FILE ("-": stdin)',
    options: ['from', 'suite', 'purpose'],
    args: ['NAME'],
    what: (a) => `import key ${a[0]}`,
    async run(ctx, args, v) {
      const from = str(v, 'from');
      if (from === undefined) throw new UsageError('key import needs --from FILE (raw key bytes; "-" reads stdin)');
      const keyName = name(args);
      const suite = suiteOpt(v);
      const purpose = purposeOpt(v);
      const material = await readMaterial(ctx, from, suite);
      const key = await withMaterial(material, (m) => ctx.client().importKey(keyName, m, { suite, purpose }));
      return printKey(ctx, key, `imported key ${key.name}: ${describe(key)}`);
    },
  },
  {
    name: 'key list',
    synopsis: 'key list',
    summary: 'list every key (name, purpose, suite, state, primary version, origin)',
    options: [],
    args: [],
    what: () => 'list keys',
    async run(ctx) {
      const keys: Key[] = [];
      for await (const key of ctx.client().keys({ pageSize: 1000 })) keys.push(key);
      if (ctx.json) ctx.printJson({ keys: keys.map((k) => keyJson(k, false)) });
      else ctx.print(keyTable(keys));
      return 0;
    },
  },
  {
    name: 'key show',
    synopsis: 'key show NAME',
    summary: "print every field of a key, with its versions' encryption counts",
    options: [],
    args: ['NAME'],
    what: (a) => `show key ${a[0]}`,
    async run(ctx, args) {
      const keyName = name(args);
      const key = await ctx.client().getKey(keyName, { view: 'full' });
      return printKey(ctx, key, keyText(key));
    },
  },
  {
    name: 'key rotate',
    synopsis: 'key rotate NAME [--from FILE]',
    summary: 'add a new primary version (imported keys: new material from FILE)',
    options: ['from'],
    args: ['NAME'],
    what: (a) => `rotate key ${a[0]}`,
    async run(ctx, args, v) {
      const keyName = name(args);
      const from = str(v, 'from');
      const client = ctx.client();
      const key =
        from === undefined
          ? await client.rotateKey(keyName)
          : await withMaterial(await readMaterial(ctx, from, undefined), (m) => client.rotateKey(keyName, m));
      return printKey(ctx, key, `rotated key ${key.name}: primary version ${key.primaryVersion}`);
    },
  },
  {
    name: 'key disable',
    synopsis: 'key disable NAME',
    summary: 'refuse every operation with the key until enabled',
    options: [],
    args: ['NAME'],
    what: (a) => `disable key ${a[0]}`,
    async run(ctx, args) {
      const keyName = name(args);
      const key = await ctx.client().disableKey(keyName);
      return printKey(ctx, key, `disabled key ${key.name}`);
    },
  },
  {
    name: 'key enable',
    synopsis: 'key enable NAME',
    summary: 'enable a disabled key',
    options: [],
    args: ['NAME'],
    what: (a) => `enable key ${a[0]}`,
    async run(ctx, args) {
      const keyName = name(args);
      const key = await ctx.client().enableKey(keyName);
      return printKey(ctx, key, `enabled key ${key.name}`);
    },
  },
  {
    name: 'key delete',
    synopsis: 'key delete NAME [--after DUR]',
    summary: "schedule the deletion of a key (default after 7d, or the daemon's minimum if longer); prints when",
    options: ['after'],
    args: ['NAME'],
    what: (a) => `schedule deletion of key ${a[0]}`,
    async run(ctx, args, v) {
      const after = str(v, 'after');
      const waitingPeriodMs = after === undefined ? undefined : boundedDuration(after, '--after', MAX_WAITING_PERIOD);
      const keyName = name(args);
      const key = await ctx.client().scheduleKeyDeletion(keyName, { waitingPeriodMs });
      const when = keyJson(key).deletionTime ?? 'an unknown time';
      return printKey(ctx, key, `key ${key.name} will be deleted at ${when} (until then: ringfence key cancel-delete ${key.name})`);
    },
  },
  {
    name: 'key cancel-delete',
    synopsis: 'key cancel-delete NAME',
    summary: 'cancel a scheduled deletion (the key stays disabled)',
    options: [],
    args: ['NAME'],
    what: (a) => `cancel deletion of key ${a[0]}`,
    async run(ctx, args) {
      const keyName = name(args);
      const key = await ctx.client().cancelKeyDeletion(keyName);
      return printKey(ctx, key, `cancelled the deletion of key ${key.name}; it is disabled (enable it with: ringfence key enable ${key.name})`);
    },
  },
];
