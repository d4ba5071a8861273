/**
 * The channel options the SDK's Transport hands to grpc-js, read where grpc.Client receives them:
 * no daemon and no clock needed (lifecycle.test.ts has the daemon restart end to end).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Transport } from './transport.js';

const built = vi.hoisted(() => [] as Record<string, unknown>[]);
vi.mock('@grpc/grpc-js', async (importOriginal) => {
  const grpc = await importOriginal<typeof import('@grpc/grpc-js')>();
  class Client extends grpc.Client {
    constructor(...args: ConstructorParameters<typeof grpc.Client>) {
      built.push({ ...args[2] });
      super(...args);
    }
  }
  return { ...grpc, Client };
});

const transports: Transport[] = [];
afterEach(() => {
  for (const t of transports.splice(0)) t.close();
  built.length = 0;
});

/** The options of the grpc.Client a new Transport builds (it connects only on a first call). */
function channelOptions(grpcOptions?: ConstructorParameters<typeof Transport>[2]): Record<string, unknown> {
  transports.push(new Transport('/nonexistent/ringfence.sock', undefined, grpcOptions));
  expect(built).toHaveLength(1);
  return built[0]!;
}

describe('Transport channel options', () => {
  // Found by review: with grpc-js's defaults (1 s, growing 1.6x to 120 s), calls kept failing for
  // 12 s after a 30 s outage against a daemon already back. Capped at 1 s, a restart costs about a second.
  it('caps the reconnect backoff at 1 s, starting at 200 ms', () => {
    expect(channelOptions()).toMatchObject({ 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1000 });
  });

  it("lets the caller's grpcOptions override the backoff and keeps the other defaults", () => {
    expect(channelOptions({ 'grpc.max_reconnect_backoff_ms': 5000 })).toMatchObject({
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  });
});
