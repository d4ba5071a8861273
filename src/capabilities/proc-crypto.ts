import { readFileSync } from 'node:fs';

export interface ProcCryptoEntry {
  name: string;
  driver: string;
  module: string;
  priority: number;
  type: string;
}

/** Parses /proc/crypto: blank-line separated blocks of "key : value" lines. */
export function parseProcCrypto(text: string): ProcCryptoEntry[] {
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const f = new Map<string, string>();
      for (const line of block.split('\n')) {
        const i = line.indexOf(':');
        if (i > 0) f.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
      }
      return { name: f.get('name') ?? '', driver: f.get('driver') ?? '', module: f.get('module') ?? '', priority: Number(f.get('priority') ?? 0), type: f.get('type') ?? '' };
    })
    .filter((e) => e.name !== '');
}

export function readProcCrypto(path = '/proc/crypto'): ProcCryptoEntry[] {
  try {
    return parseProcCrypto(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

/** The driver the kernel would pick for `name`: the highest-priority entry. */
export function driverFor(entries: ProcCryptoEntry[], name: string): ProcCryptoEntry | undefined {
  let best: ProcCryptoEntry | undefined;
  for (const e of entries) if (e.name === name && (!best || e.priority > best.priority)) best = e;
  return best;
}
