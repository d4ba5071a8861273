import { cannotWork, probeCapabilities, type CapabilityReport } from '../../capabilities/probe.js';

/** `ringfence doctor [--json]`: the kernel capability report; needs no daemon. */
export function doctor(json: boolean, write: (s: string) => void): number {
  const report = probeCapabilities();
  write(json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  // Exit 1 when ringfence could not work here (the daemon would refuse to start), so scripts can gate on it.
  return cannotWork(report) === undefined ? 0 : 1;
}

export function formatReport(r: CapabilityReport): string {
  const lines = [`ringfence doctor — kernel ${r.kernel.release}, uid ${r.privilege.uid}`, ''];
  for (const s of r.summary) lines.push(`  ${s}`);
  lines.push('', '  suite                      kind  status      kernel algorithm -> driver');
  for (const s of r.suites) {
    const algs = s.algorithms.map((a) => `${a.name}${a.driver ? ` -> ${a.driver}` : ''}${a.status !== 'available' ? ` [${a.status}${a.errno ? ` ${a.errno}` : ''}]` : ''}`);
    lines.push(`  ${s.name.padEnd(26)} ${s.kind.padEnd(5)} ${s.status.padEnd(11)} ${algs.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}
