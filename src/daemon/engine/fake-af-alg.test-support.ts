/**
 * A stand-in for native-ffi/af-alg.js for tests of the real CryptoEngine on hosts without AF_ALG:
 * every request "succeeds", its output filled with 0xab (no tag is verified: it stands in for
 * chunks that would verify). `onRead` sees each output buffer as the kernel would fill it.
 * Use from a vi.mock factory: `vi.mock(path, async (orig) => (await import(...)).fakeAfAlg(await orig(), onRead))`.
 */
export function fakeAfAlg<T extends object>(real: T, onRead: (out: Buffer) => void = () => {}): T {
  let next = 100;
  const read = (out: Buffer): number => {
    onRead(out);
    out.fill(0xab);
    return out.length;
  };
  return {
    ...real,
    openTransform: () => next++,
    acceptOp: () => next++,
    setKeyBySerial: () => {},
    setAeadAuthSize: () => {},
    closeFd: () => {},
    sizeBuffers: () => ({ send: 1 << 20, receive: 1 << 20 }),
    sendRequest: () => {},
    readResult: (_fd: number, out: Buffer) => read(out),
    sendRequestAsync: async () => {},
    readResultAsync: async (_fd: number, out: Buffer) => read(out),
  };
}
