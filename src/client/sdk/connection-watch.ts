/**
 * Which connection of the channel is the current one, as a count of the times the channel left
 * READY (a GOAWAY, max age or idle, or a dropped socket): a stream opened at epoch N runs on a
 * connection the channel no longer uses once the epoch is past N. grpc-js says so only through the
 * channel's connectivity state; one watcher per channel, re-armed on each change while anyone listens.
 */
import * as grpc from '@grpc/grpc-js';

const { READY, SHUTDOWN } = grpc.connectivityState;
type Channel = ReturnType<grpc.Client['getChannel']>;

export class ConnectionWatch {
  private current = 0;
  private readonly listeners = new Set<() => void>();
  private watching = false;

  constructor(private readonly channel: Channel) {}

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
    let state = this.channel.getConnectivityState(false);
    if (state === SHUTDOWN) return;
    const changed = () => {
      const now = this.channel.getConnectivityState(false);
      if (state === READY && now !== READY) {
        this.current++;
        for (const listener of [...this.listeners]) listener();
      }
      state = now;
      // No listener: the watcher is not re-armed (a pending one holds its callback until the next change).
      if (now === SHUTDOWN || this.listeners.size === 0) this.watching = false;
      else this.channel.watchConnectivityState(now, Infinity, changed);
    };
    this.watching = true;
    this.channel.watchConnectivityState(state, Infinity, changed);
  }
}
