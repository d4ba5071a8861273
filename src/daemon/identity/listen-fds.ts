/**
 * systemd socket activation (sd_listen_fds(3)): when LISTEN_PID is this process and LISTEN_FDS
 * >= 1, fd 3 is a listening socket passed in. The variables are removed afterwards (as
 * sd_listen_fds(1) does) so that children do not believe the fds are theirs.
 */
export const SD_LISTEN_FDS_START = 3;

export function listenFdFromEnv(env: NodeJS.ProcessEnv, pid: number = process.pid): number | undefined {
  const fds = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  if (!fds || !forPid) return undefined;
  if (!/^\d+$/.test(forPid) || Number(forPid) !== pid) return undefined;
  if (!/^\d+$/.test(fds)) throw new Error(`LISTEN_FDS=${JSON.stringify(fds)} is not a number`);
  const n = Number(fds);
  if (n === 0) return undefined;
  if (n > 1) throw new Error(`systemd passed ${n} sockets; ringfenced listens on exactly one (ListenStream= once in the .socket unit)`);
  return SD_LISTEN_FDS_START;
}

export function clearListenEnv(env: NodeJS.ProcessEnv): void {
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
}
