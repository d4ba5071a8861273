/**
 * A test's stand-in for the CryptoEngine: it is its own view for every caller, as
 * CryptoEngine.forCaller is for the daemon's calls (handler.ts callContext, stream handlers).
 */
export function callerEngine<T extends object>(engine: T = {} as T): T & { forCaller: () => T } {
  const withView = Object.assign(engine, { forCaller: () => withView });
  return withView;
}
