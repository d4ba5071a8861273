import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clientSocketCandidates, clientSocketPath, ROOT_SOCKET_PATH } from './socket-path.js';

describe('clientSocketPath: where the SDK and CLI look for a daemon', () => {
  const runtime = mkdtempSync(join(tmpdir(), 'rf-xdg-'));
  const own = join(runtime, 'ringfence.sock');
  afterAll(() => rmSync(runtime, { recursive: true, force: true }));
  const only = (...present: string[]) => (p: string) => present.includes(p);

  it('takes RINGFENCE_SOCKET first, resolved against the working directory', () => {
    expect(clientSocketPath({ RINGFENCE_SOCKET: '/custom.sock', XDG_RUNTIME_DIR: runtime }, 1000, only(own, ROOT_SOCKET_PATH))).toBe('/custom.sock');
    expect(clientSocketPath({ RINGFENCE_SOCKET: 'rel.sock' }, 1000, only())).toBe(join(process.cwd(), 'rel.sock'));
  });

  it('gives root the system socket', () => {
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 0, only(own))).toBe(ROOT_SOCKET_PATH);
  });

  it("prefers the user's own daemon, then the systemd-installed one", () => {
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 1000, only(own, ROOT_SOCKET_PATH))).toBe(own);
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 1000, only(ROOT_SOCKET_PATH))).toBe(ROOT_SOCKET_PATH);
    // A service account usually has no XDG_RUNTIME_DIR: the system daemon, not an error.
    expect(clientSocketPath({}, 999, only(ROOT_SOCKET_PATH))).toBe(ROOT_SOCKET_PATH);
    expect(clientSocketPath({ XDG_RUNTIME_DIR: 'relative/dir' }, 999, only(ROOT_SOCKET_PATH))).toBe(ROOT_SOCKET_PATH);
  });

  it('with no socket anywhere, names the path the user would expect', () => {
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 1000, only())).toBe(own);
    expect(clientSocketPath({}, 999, only())).toBe(ROOT_SOCKET_PATH);
  });

  it('checks the file system by default', () => {
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 1000)).toBe(existsSync(ROOT_SOCKET_PATH) ? ROOT_SOCKET_PATH : own);
    writeFileSync(own, '');
    expect(clientSocketPath({ XDG_RUNTIME_DIR: runtime }, 1000)).toBe(own);
  });

  // What the SDK chooses among again when its socket has gone (transport.ts): only a choice that depended on which sockets exist.
  it('lists the candidates it chose among: two only for a non-root user with an XDG_RUNTIME_DIR and no RINGFENCE_SOCKET', () => {
    expect(clientSocketCandidates({ XDG_RUNTIME_DIR: runtime }, 1000)).toEqual([own, ROOT_SOCKET_PATH]);
    expect(clientSocketCandidates({ RINGFENCE_SOCKET: '/custom.sock', XDG_RUNTIME_DIR: runtime }, 1000)).toEqual(['/custom.sock']);
    expect(clientSocketCandidates({ XDG_RUNTIME_DIR: runtime }, 0)).toEqual([ROOT_SOCKET_PATH]);
    expect(clientSocketCandidates({ XDG_RUNTIME_DIR: 'relative/dir' }, 999)).toEqual([ROOT_SOCKET_PATH]);
  });
});
