/**
 * Parsing of the values the CLI takes on its command line (durations, sizes, hex, names), and the
 * two error kinds every command throws: UsageError (exit 2) and CommandError (exit 1).
 */

/** A malformed invocation: exit 2 with the message and the command's usage on stderr. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The operation failed for a reason the CLI found itself (exit 1, the message as is). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
}

export const MiB = 1024 * 1024;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

/**
 * "30s", "15m", "1h", "7d", "500ms" -> milliseconds. One integer and one unit, nothing else, so a
 * typo such as "7" (seconds? days?) or "1.5h" is refused instead of guessed.
 */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d{1,12})(ms|s|m|h|d)$/.exec(text);
  if (!m) throw new UsageError(`${option}: "${text}" is not a duration (an integer and a unit: ms, s, m, h or d, e.g. 30s, 15m, 1h, 7d)`);
  return Number(m[1]) * UNIT_MS[m[2] as Unit];
}

/** Milliseconds -> the largest unit that divides evenly ("1h", "7d", "90s", "1500ms"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}


/** Milliseconds of a google.protobuf.Duration, or undefined when unset. */
export function durationMs(d: { seconds: bigint; nanos: number } | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000);
}

/** A decimal integer within [min, max]; refuses signs, exponents, blanks and leading zeros' cousins. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^\d{1,16}$/.test(text)) throw new UsageError(`${what}: "${text}" is not a whole number`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${what}: ${n} is out of range (${min} to ${max})`);
  return n;
}

/** Hex (either case, even length, optional 0x) -> bytes; refuses anything Buffer would skip. */
function describeNonHex(t: string): string {
  if (t.length === 0) return 'empty';
  const bad = [...t].findIndex((c) => !/[0-9a-fA-F]/.test(c));
  return bad >= 0 ? `not hex (character ${bad + 1} of ${t.length})` : `${t.length} hex digits, an odd number`;
}

export function parseHex(text: string, what: string): Buffer {
  const t = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  // The value is not quoted: it may be a MAC, or a secret given to the wrong option (found by review).
  if (t.length === 0 || t.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(t)) throw new UsageError(`${what}: ${describeNonHex(t)}; give an even number of hex digits`);
  return Buffer.from(t, 'hex');
}

/** One of `names`, exactly as spelt (the CLI's names are lowercase). */
export function parseChoice<T extends string>(text: string, what: string, names: readonly T[]): T {
  if (!(names as readonly string[]).includes(text)) throw new UsageError(`${what}: unknown value "${text}" (expected one of: ${names.join(', ')})`);
  return text as T;
}

/** Key names as the daemon accepts them; checked here too so typos fail as usage errors. */
export function parseKeyName(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(text)) {
    throw new UsageError(`"${text}" is not a valid key name (1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)`);
  }
  return text;
}

// Second lines for an error's report (e.g. "discard the output"), printed after its message.
const notes = new WeakMap<object, string>();

export function addNote(err: unknown, note: string): void {
  if (typeof err === 'object' && err !== null) notes.set(err, note);
}

export function noteOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? notes.get(err) : undefined;
}

// Advice appended to an error's own line (cli.ts), where the CLI knows more than the daemon could.
const hints = new WeakMap<object, string>();

export function addHint(err: unknown, hint: string): void {
  if (typeof err === 'object' && err !== null) hints.set(err, hint);
}

export function hintOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? hints.get(err) : undefined;
}
