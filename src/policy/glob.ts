/**
 * Key-name patterns: `*` matches any run of characters (also none), `?` exactly one; every other
 * character matches itself; the pattern must match the whole name. No character classes, no
 * escapes — key names are plain, and a smaller language is easier to read in a policy.
 *
 * Matched by the classic greedy walk with one backtrack point (the last `*`), in time linear in
 * pattern x name at worst — never exponential: a regex of several `.*` backtracks exponentially
 * on a near miss, and the names matched here come from clients.
 */
export function compileGlob(pattern: string): (name: string) => boolean {
  const p = [...pattern];
  return (name) => matchGlob(p, [...name]);
}

function matchGlob(p: readonly string[], s: readonly string[]): boolean {
  let pi = 0;
  let si = 0;
  // Where the last `*` was, and the name position it is now taken to end at.
  let star = -1;
  let starEnd = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === s[si]))) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      starEnd = si;
    } else if (star >= 0) {
      // Let the last `*` take one more character, and retry what follows it.
      pi = star + 1;
      si = ++starEnd;
    } else return false;
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}
