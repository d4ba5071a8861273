/**
 * prctl(2) PR_SET_DUMPABLE. A process that is not dumpable leaves no core dump, and processes of
 * its own uid can neither ptrace it nor read its /proc/<pid>/mem or environ: imported key material
 * passes through buffers the daemon cannot wipe (the gRPC transport's), and a crash or a debugger
 * of the daemon's uid must not find it there.
 */
import { call } from './libc.js';

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;

export function setDumpable(dumpable: boolean): void {
  call('prctl', [PR_SET_DUMPABLE, 'unsigned long', dumpable ? 1 : 0, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0], 'PR_SET_DUMPABLE');
}

export function isDumpable(): boolean {
  return call('prctl', [PR_GET_DUMPABLE, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0, 'unsigned long', 0], 'PR_GET_DUMPABLE') === 1;
}
