/**
 * The text form of ciphertexts, for the CLI, JSON and config files: "ringfence:v1:" + base64url of
 * the binary ciphertext, without padding. The daemon never sees it: it speaks binary only.
 *
 * The "v1" is the version of this text form, not of the binary format inside it: unary envelopes
 * (format 1) and stream ciphertexts (format 2) both use it, and byte 2 of the binary says which.
 * A different text encoding would get a new prefix, so old tools refuse it instead of mis-decoding.
 */

export const CIPHERTEXT_TEXT_PREFIX = 'ringfence:v1:';

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** `"ringfence:v1:" + base64url(bytes)`, no padding. Works for unary and stream ciphertexts. */
export function ciphertextToText(bytes: Uint8Array): string {
  return CIPHERTEXT_TEXT_PREFIX + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Parses the text form. Surrounding ASCII white space (space, tab, CR, LF) is ignored (a trailing
 * newline from a file or a shell is common); anything else is refused (Unicode spaces such as
 * U+00A0 or U+FEFF too): a missing or different prefix, characters outside
 * the base64url alphabet (including `=` padding and the `+` `/` of plain base64), and non-canonical
 * encodings (a length of 4n+1, or stray low bits in the last character) that Buffer would silently
 * truncate, so each ciphertext has exactly one text form.
 */
/** Without surrounding space, tab, CR and LF; index loops, as a regular expression for the end backtracks quadratically on inner spaces (review by helper-111). */
function trimAsciiSpace(text: string): string {
  const space = (i: number) => {
    const c = text.charCodeAt(i);
    return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
  };
  let start = 0;
  let end = text.length;
  while (start < end && space(start)) start++;
  while (end > start && space(end - 1)) end--;
  return text.slice(start, end);
}

export function ciphertextFromText(text: string): Buffer {
  const t = trimAsciiSpace(text);
  if (!t.startsWith(CIPHERTEXT_TEXT_PREFIX)) {
    // Not quoted: a caller who passed the wrong string may have passed plaintext or a secret. Only
    // another version's prefix is named, as that is all it shows.
    const other = /^ringfence:v\d{1,4}:/.exec(t)?.[0];
    const got = other ? `"${other}...", a format version this one does not read` : `${t.length} characters without it`;
    throw new Error(`not a ringfence ciphertext: text form must start with "${CIPHERTEXT_TEXT_PREFIX}" (got ${got})`);
  }
  const body = t.slice(CIPHERTEXT_TEXT_PREFIX.length);
  if (!BASE64URL.test(body)) throw new Error('not a ringfence ciphertext: the text after the prefix is not base64url (A-Z a-z 0-9 - _, no padding)');
  const bytes = Buffer.from(body, 'base64url');
  if (bytes.toString('base64url') !== body) throw new Error('not a ringfence ciphertext: the base64url text is truncated or not canonical');
  return bytes;
}
