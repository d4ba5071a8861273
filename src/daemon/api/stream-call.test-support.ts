/**
 * A stand-in for a grpc-js bidi call, for host tests of the stream handlers: push requests into
 * `call`, read what the handler wrote from `written` and the statuses it emitted from `errors`.
 */
import { Duplex } from 'node:stream';

export function fakeStreamCall() {
  const errors: { code?: number; details?: string; metadata?: unknown }[] = [];
  const written: unknown[] = [];
  const call = Object.assign(
    new Duplex({
      objectMode: true,
      read() {},
      write(m, _e, cb) {
        written.push(m);
        cb();
      },
    }),
    { getDeadline: () => Infinity },
  );
  call.on('error', (e) => errors.push(e as never));
  return { call, errors, written };
}
