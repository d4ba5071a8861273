/**
 * Key-name patterns: `*` matches any run of characters (also none), `?` exactly one; every other
 * character matches itself; the pattern must match the whole name. No character classes, no
 * escapes — key names are plain, and a smaller language is easier to read in a policy.
 */
export function compileGlob(pattern: string): (name: string) => boolean {
  const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}/]/g, '\\$&'))).join('');
  const re = new RegExp(`^${body}$`, 'su');
  return (name) => re.test(name);
}
