/**
 * A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET, bound by Python so that it
 * is independent of the daemon's own FFI (sd_notify over koffi). Shared by the host watchdog test and
 * the sd_notify e2e test in the kernel guest.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface NotifyReceiver {
  readonly path: string;
  /** Every datagram received so far, decoded, in order ("READY=1\nSTATUS=..."). */
  readonly messages: string[];
  close(): void;
}

// Prints 'bound' once listening, then each datagram as a Python repr (one line, newlines escaped).
const RECEIVER_PY = `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('bound',flush=True)
while True:
    print(repr(s.recv(4096).decode()),flush=True)`;

/** Binds a datagram socket at `path` (which must not exist) and resolves once it is bound. */
export async function startNotifyReceiver(path: string): Promise<NotifyReceiver> {
  const child: ChildProcess = spawn('python3', ['-c', RECEIVER_PY, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'bound') resolve();
        else messages.push(line.slice(1, -1).replace(/\\n/g, '\n'));
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`notify receiver exited ${code}`)));
  });
  return { path, messages, close: () => child.kill() };
}
