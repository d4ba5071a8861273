/**
 * JSON.parse keeps the last of two members with the same name, silently. In a policy or config file
 * that lets a second `"keys": ["*"]` below the `"keys"` a reviewer reads widen a grant (found by
 * review, helper-113). This finds the first repeated name in text JSON.parse already accepted, so
 * only strings, brackets and separators need telling apart.
 */
import { lineColumn } from './position.js';

export interface DuplicateName {
  /** Where the member is, e.g. `rules[0].keys`. */
  path: string;
  /** Offset of the second occurrence's name in the text. */
  offset: number;
  /** The same as `line L, column C` (1-based). */
  at: string;
}

type Frame = { kind: 'object'; names: Set<string>; name?: string; expectName: boolean } | { kind: 'array'; index: number };

const pathOf = (frames: Frame[]): string =>
  frames.map((f) => (f.kind === 'array' ? `[${f.index}]` : f.name === undefined ? '' : `.${f.name}`)).join('').replace(/^\./, '');

/** The first member name given twice in one object of valid JSON `text`, or undefined. */
export function firstDuplicateName(text: string): DuplicateName | undefined {
  const frames: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const top = frames.at(-1);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      if (top?.kind === 'object' && top.expectName) {
        const name = JSON.parse(text.slice(start, i + 1)) as string; // escapes decoded: "k\u0065ys" is "keys"
        top.expectName = false;
        if (top.names.has(name)) {
          top.name = name;
          return { path: pathOf(frames), offset: start, at: lineColumn(text, start) };
        }
        top.names.add(name);
        top.name = name;
      }
    } else if (c === 0x7b /* { */) frames.push({ kind: 'object', names: new Set(), expectName: true });
    else if (c === 0x5b /* [ */) frames.push({ kind: 'array', index: 0 });
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) frames.pop();
    else if (c === 0x2c /* , */) {
      if (top?.kind === 'array') top.index++;
      else if (top) top.expectName = true;
    }
  }
  return undefined;
}
