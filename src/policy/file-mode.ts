/**
 * Who may write the policy file. Anyone who can write it can grant themselves every key, so the
 * daemon refuses a file that is group- or world-writable or that belongs to anyone but root or the
 * daemon's own user. `ringfence policy check` applies the same rule, so it refuses what the daemon would.
 */

/** Why a policy file with this owner and mode is refused, or undefined when it is accepted. */
export function policyFileRefusal(st: { mode: number; uid: number }, daemonUid: number | undefined): string | undefined {
  if ((st.mode & 0o002) !== 0) return 'it is writable by every user (chmod o-w it)';
  if ((st.mode & 0o020) !== 0) return 'it is writable by its group (chmod g-w it)';
  if (daemonUid !== undefined && st.uid !== 0 && st.uid !== daemonUid) return `it belongs to uid ${st.uid}, not to root or the daemon's uid ${daemonUid} (chown it)`;
  return undefined;
}
