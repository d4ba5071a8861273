/**
 * A service's RingfenceClient across the daemon's restarts (review by helper-208): what calls in
 * flight see when the daemon is killed (kill -9) or stops (SIGTERM) under them, and whether the same
 * client, and the same session, serve again once it is back, without being made anew.
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ErrorReason, isCancelled, isDaemonUnreachable, isUnavailable, RingfenceClient, RingfenceError } from '../../src/client/sdk/index.js';
import { TestDaemon } from '../support/daemon.js';
import { sleep } from '../support/wait.js';

const discard = () => new Writable({ write: (_chunk, _enc, cb) => cb() });
const outcome = (p: Promise<unknown>) => p.then(() => 'OK', (e: unknown) => e);

/** Retries `call` until it succeeds (the client reconnects within a second or so); the last error after `ms`. */
async function whenBack(call: () => Promise<unknown>, ms = 60_000): Promise<unknown> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await outcome(call());
    if (r === 'OK' || Date.now() > end) return r;
    await sleep(200);
  }
}

describe('a client across daemon restarts', () => {
  it('kill -9: calls, session operations and streams in flight fail UNAVAILABLE, none CANCELLED or hung; the same client and session serve again after the restart', async () => {
    const daemon = await TestDaemon.start();
    const client = new RingfenceClient({ socketPath: daemon.socket });
    const session = client.session();
    try {
      await client.createKey('svc');
      const source = new PassThrough();
      source.write('part of a stream');
      const stream = outcome(pipeline(source, client.encryptStream('svc'), discard()));
      const inFlight: Promise<unknown>[] = [];
      for (let i = 0; i < 200; i++) inFlight.push(outcome(client.encrypt('svc', `m${i}`)), outcome(session.encrypt('svc', `s${i}`)));
      await daemon.kill9();
      expect(await stream).not.toBe('OK'); // its source never ended
      const failures = [...(await Promise.all(inFlight)), await stream].filter((r) => r !== 'OK');
      for (const err of failures) {
        expect(err).toBeInstanceOf(RingfenceError);
        expect([isUnavailable(err), isCancelled(err)], (err as Error).message).toEqual([true, false]);
      }
      // Down: new calls fail at once, the request not sent.
      expect(isDaemonUnreachable(await outcome(client.encrypt('svc', 'x')))).toBe(true);
      expect(isDaemonUnreachable(await outcome(session.encrypt('svc', 'x')))).toBe(true);
      await daemon.restart();
      expect(await whenBack(() => client.encrypt('svc', 'again'))).toBe('OK');
      expect(await outcome(session.encrypt('svc', 'again'))).toBe('OK');
      expect(await outcome(client.pipelined.encrypt('svc', 'again'))).toBe('OK');
      expect(await outcome(pipeline(Readable.from(['whole']), client.encryptStream('svc'), discard()))).toBe('OK');
    } finally {
      await client.close();
      await daemon.kill9();
    }
  });

  it('SIGTERM: a stream still running when the drain period ends is answered UNAVAILABLE / SHUTTING_DOWN, not CANCELLED as if the caller had aborted it', async () => {
    const daemon = await TestDaemon.start();
    const client = new RingfenceClient({ socketPath: daemon.socket });
    try {
      await client.createKey('svc');
      const source = new PassThrough(); // a producer that never finishes within the drain
      source.write('part of a stream');
      const stream = client.encryptStream('svc');
      const result = outcome(pipeline(source, stream, discard()));
      await stream.key; // under way on the daemon
      expect(await daemon.stop()).toBe(0);
      expect(daemon.output).toContain('calls still running after the drain period');
      const err = await result;
      expect(err).toBeInstanceOf(RingfenceError);
      expect([isUnavailable(err), isCancelled(err)], (err as Error).message).toEqual([true, false]);
      // The daemon answered it before closing the connection (api/drain.ts), saying what was not done.
      expect([ErrorReason[(err as RingfenceError).reason], (err as Error).message]).toEqual(['SHUTTING_DOWN', expect.stringMatching(/^the daemon stopped before this call ended .*not a complete ciphertext/)]);
    } finally {
      await client.close();
      await daemon.kill9();
    }
  });
});
