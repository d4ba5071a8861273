import { cannotWork, inconclusiveProbe, isRestricted, probeCapabilities, restrictSwitchesOff, type CapabilityReport } from '../../capabilities/probe.js';

/** `ringfence doctor [--json]`: the kernel capability report; needs no daemon. */
export function doctor(json: boolean, write: (s: string) => void): number {
  const report = probeCapabilities();
  const reason = inconclusiveProbe(report) ?? cannotWork(report) ?? null;
  write(json ? `${JSON.stringify({ ...report, usable: reason === null, reason }, null, 2)}\n` : formatReport(report));
  // Exit 1 when ringfence could not work here (the daemon would refuse to start), so scripts can gate on it.
  return reason === null ? 0 : 1;
}

/** The report is this process's view; a daemon with more privilege may see more (found by review). */
function verdict(r: CapabilityReport): string[] {
  const reason = inconclusiveProbe(r) ?? cannotWork(r);
  if (reason === undefined) return [`Verdict: ringfence can work in a process like this one (uid ${r.privilege.uid}).`];
  const lines = [`Verdict: ringfence cannot work in a process like this one (uid ${r.privilege.uid}): ${reason}.`];
  // Not in the summary, which the daemon logs too: this is for someone trying ringfence out.
  if (!r.afAlg.present && r.afAlg.errno === 'EAFNOSUPPORT' && !restrictSwitchesOff(r)) lines.push('To try ringfence on a machine like this, run it in the project\'s test VM: npm run vm -- scripts/try.sh');
  if (isRestricted(r) && !r.privilege.sufficientForRestricted) {
    lines.push('This is this process\'s view: a daemon with CAP_NET_ADMIN sees more. Ask the running daemon with `ringfence status`.');
  }
  return lines;
}

export function formatReport(r: CapabilityReport): string {
  const lines = [`ringfence doctor — kernel ${r.kernel.release}, uid ${r.privilege.uid}`, ''];
  for (const s of [...r.summary, ...verdict(r)]) lines.push(`  ${s}`);
  lines.push('', '  suite                      kind  status      kernel algorithm -> driver');
  for (const s of r.suites) {
    const algs = s.algorithms.map((a) => `${a.name}${a.driver ? ` -> ${a.driver}` : ''}${a.status !== 'available' ? ` [${a.status}${a.errno ? ` ${a.errno}` : ''}]` : ''}`);
    lines.push(`  ${s.name.padEnd(26)} ${s.kind.padEnd(5)} ${s.status.padEnd(11)} ${algs.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}
