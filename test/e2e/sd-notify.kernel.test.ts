/**
 * The daemon speaks systemd's notify protocol itself (what Type=notify and WatchdogSec= in
 * deploy/ringfenced.service rely on): READY=1 with STATUS= and MAINPID= once serving, WATCHDOG=1 every
 * WATCHDOG_USEC/2, STATUS= when the key count changes, STOPPING=1 on SIGTERM. A Python datagram
 * socket (test/support/notify-receiver.ts) stands in for systemd's NOTIFY_SOCKET.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RingfenceClient } from '../../src/client/sdk/index.js';
import { TestDaemon } from '../support/daemon.js';
import { startNotifyReceiver, type NotifyReceiver } from '../support/notify-receiver.js';
import { sleep } from '../support/wait.js';

const WATCHDOG_USEC = 1_000_000; // pings every 500 ms

const until = async (what: string, cond: () => boolean, ms = 30_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
};

describe('sd_notify from ringfenced', () => {
  const receivers: NotifyReceiver[] = [];
  afterAll(() => receivers.forEach((r) => r.close()));

  it('READY, watchdog pings, STATUS updates, STOPPING', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'rf-notify-')), 'notify');
    const receiver = await startNotifyReceiver(path);
    receivers.push(receiver);
    const { messages } = receiver;
    const daemon = await TestDaemon.start({ env: { NOTIFY_SOCKET: path, WATCHDOG_USEC: String(WATCHDOG_USEC) } });
    try {
      await until('READY=1', () => messages.some((m) => m.includes('READY=1')));
      const ready = messages.find((m) => m.includes('READY=1'))!;
      expect(ready.split('\n')).toEqual(['READY=1', `STATUS=serving 0 keys on ${daemon.socket}`, `MAINPID=${daemon.pid}`]);

      const pings = () => messages.filter((m) => m.startsWith('WATCHDOG=1')).length;
      await until('3 watchdog pings', () => pings() >= 3);

      const client = new RingfenceClient({ socketPath: daemon.socket });
      await client.createKey('notify-test');
      await client.close();
      await until('a STATUS update', () => messages.some((m) => m.includes(`STATUS=serving 1 keys on ${daemon.socket}`)));
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    await until('STOPPING=1', () => messages.some((m) => m.startsWith('STOPPING=1')));
    expect(messages.find((m) => m.startsWith('STOPPING=1'))).toBe('STOPPING=1\nSTATUS=draining calls');
    expect(messages.every((m) => /^(READY|WATCHDOG|STATUS|STOPPING)=/.test(m))).toBe(true);
  }, 120_000);
});
