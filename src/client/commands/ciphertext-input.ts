/**
 * Reading a ciphertext of unknown form: the text form ("ringfence:v1:" + base64url, surrounding
 * whitespace allowed) or binary; binary byte 2 is the format: 1 = unary (Encrypt), 2 = stream
 * (EncryptStream). Both kinds start with the magic "RF". Only as much is read as the decision
 * needs; a stream ciphertext is left in the Input to be streamed on.
 */
import { CIPHERTEXT_TEXT_PREFIX, ciphertextFromText } from '../sdk/index.js';
import { CommandError, MiB } from './args.js';
import type { Input } from './io.js';

export const UNARY_FORMAT = 1;
export const STREAM_FORMAT = 2;
/** Larger than any unary ciphertext a daemon takes (its 4 MiB + 64 KiB message limit). */
const UNARY_MAX_BYTES = 4 * MiB + 64 * 1024;
/** Text forms are for small things (tokens, config values); big data travels in binary. */
const TEXT_MAX_BYTES = 16 * MiB;

export type Sniffed =
  /** The whole ciphertext is in `bytes` (text input is always read whole). */
  | { form: 'text' | 'binary'; format: number; bytes: Buffer }
  /** A binary stream ciphertext still in the Input. */
  | { form: 'binary'; format: typeof STREAM_FORMAT; bytes: undefined };

const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

export async function readCiphertext(input: Input): Promise<Sniffed> {
  let head = await input.readHead(64);
  let start = 0;
  while (start < head.bytes.length && isSpace(head.bytes[start]!)) start++;
  // Whitespace of any length may come first, as ciphertextFromText allows: read on while the
  // prefix cannot be told yet (found by review, helper-135: 60 newlines first made a text form
  // "not a ringfence ciphertext").
  while (start + 10 > head.bytes.length && !head.complete && head.bytes.length < TEXT_MAX_BYTES) {
    head = await input.readHead(Math.min(head.bytes.length * 2, TEXT_MAX_BYTES));
    while (start < head.bytes.length && isSpace(head.bytes[start]!)) start++;
  }
  if (head.bytes.subarray(start, start + 10).toString('latin1') === CIPHERTEXT_TEXT_PREFIX.slice(0, 10)) {
    head = await input.readHead(TEXT_MAX_BYTES);
    if (!head.complete) throw new CommandError(`${input.label}: text-form ciphertexts larger than ${TEXT_MAX_BYTES / MiB} MiB are not supported; use the binary form`);
    let bytes: Buffer;
    try {
      bytes = ciphertextFromText(head.bytes.toString('latin1'));
    } catch (err) {
      throw new CommandError((err as Error).message);
    }
    return { form: 'text', format: bytes.length > 2 ? bytes[2]! : 0, bytes };
  }
  const b = head.bytes;
  if (b.length === 0) throw new CommandError(`${input.label} is empty, not a ciphertext`);
  if (b.length < 3 || b[0] !== 0x52 || b[1] !== 0x46) {
    throw new CommandError(`${input.label} is not a ringfence ciphertext (neither the binary form, which starts with "RF", nor the text form "${CIPHERTEXT_TEXT_PREFIX}...")`);
  }
  if (b[2] === STREAM_FORMAT) return { form: 'binary', format: STREAM_FORMAT, bytes: undefined };
  head = await input.readHead(UNARY_MAX_BYTES);
  if (!head.complete) {
    // A format this CLI does not know, and too big to let the daemon say so.
    throw new CommandError(`${input.label} is not a ciphertext this version of ringfence can read (format ${b[2]}, over ${UNARY_MAX_BYTES} bytes)`);
  }
  return { form: 'binary', format: b[2]!, bytes: head.bytes };
}
