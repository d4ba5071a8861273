/**
 * Which connection of the channel is the current one, as a count of the times the channel left
 * READY (a GOAWAY, max age or idle, or a dropped socket): a stream opened at epoch N runs on a
 * connection the channel no longer uses once the epoch is past N. grpc-js says so only through the
 * channel's connectivity state; one watcher per channel, re-armed on each change while anyone listens.
 * A transport that moves to another channel (another socket, transport.ts) starts a new epoch too.
 */
import * as grpc from '@grpc/grpc-js';

const { READY, SHUTDOWN } = grpc.connectivityState;
type Channel = ReturnType<grpc.Client['getChannel']>;

export class ConnectionWatch {
  private current = 0;
  private readonly listeners = new Set<() => void>();
  private watching = false;

  constructor(private channel: Channel) {}

  /** Streams opened before run on a channel no longer used: a new epoch, watched on `channel`. */
  moveTo(channel: Channel): void {
    this.channel = channel;
    this.watching = false; // the old channel's pending watcher ignores its callback (below)
    this.current++;
    for (const listener of [...this.listeners]) listener();
    if (this.listeners.size > 0) this.watch();
  }

  get epoch(): number {
    return this.current;
  }

  /** Calls `listener` each time the channel leaves READY, until the returned function is called. */
  onLost(listener: () => void): () => void {
    this.listeners.add(listener);
    this.watch();
    return () => this.listeners.delete(listener);
  }

  private watch(): void {
    if (this.watching) return;
    const channel = this.channel;
    let state = channel.getConnectivityState(false);
    if (state === SHUTDOWN) return;
    const changed = () => {
      if (channel !== this.channel) return; // moved off it
      const now = channel.getConnectivityState(false);
      if (state === READY && now !== READY) {
        this.current++;
        for (const listener of [...this.listeners]) listener();
      }
      state = now;
      // No listener: the watcher is not re-armed (a pending one holds its callback until the next change).
      if (now === SHUTDOWN || this.listeners.size === 0) this.watching = false;
      else channel.watchConnectivityState(now, Infinity, changed);
    };
    this.watching = true;
    channel.watchConnectivityState(state, Infinity, changed);
  }
}
