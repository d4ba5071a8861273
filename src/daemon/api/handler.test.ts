import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { CryptoService } from '../../gen/ringfence/v1/crypto_service_pb.js';
import { clientStreaming, type HandlerDeps } from './handler.js';

describe('clientStreaming', () => {
  it('audits a call the client cancelled mid-stream as CANCELLED, not as an internal error', async () => {
    const audit = vi.fn();
    const error = vi.fn();
    const deps = { audit, log: { error }, access: { forCall: () => ({ authorize: () => {} }) } } as unknown as HandlerDeps;
    let consumed = 0;
    const handler = clientStreaming(CryptoService.method.hashStream, deps, async (messages) => {
      for await (const _ of messages) consumed++;
      return {};
    });
    const call = new PassThrough({ objectMode: true });
    const callback = vi.fn();
    handler(call as never, callback);
    call.write({ data: new Uint8Array(3) });
    await vi.waitFor(() => expect(consumed).toBe(1));
    call.emit('cancelled');
    await vi.waitFor(() => expect(audit).toHaveBeenCalledTimes(1));
    expect(audit.mock.calls[0]![0]).toMatchObject({ rpc: 'CryptoService/HashStream', outcome: 'CANCELLED', bytesIn: 3 });
    expect(error).not.toHaveBeenCalled();
    expect(callback).not.toHaveBeenCalled();
  });
});
