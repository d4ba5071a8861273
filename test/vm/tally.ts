// One kernel's result from the guest's vitest JSON report: what passed, failed and was skipped,
// and anything that makes the kernel count as failed although no test failed.

export interface Tally {
  passed: number;
  failed: number;
  skipped: number;
}

/** The fields used from vitest's (jest-compatible) JSON reporter. */
interface JsonReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
}

const COUNTS = ["numPassedTests", "numFailedTests", "numPendingTests", "numTodoTests"] as const;

/**
 * `fullRun`: no test filter was given (as in CI), so a skipped or todo test is a test that did not
 * run where it should have: counted as a failure, never silently passed over.
 */
export function tallyReport(text: string, exitCode: number, fullRun: boolean): { tally: Tally; note: string } {
  let r: Partial<JsonReport>;
  try {
    r = JSON.parse(text) as Partial<JsonReport>;
  } catch (e) {
    return { tally: { passed: 0, failed: 1, skipped: 0 }, note: ` (results.json is not JSON: ${e instanceof Error ? e.message : String(e)}; counted as 1 failure)` };
  }
  if (typeof r !== "object" || r === null || !COUNTS.every((k) => Number.isSafeInteger(r[k]) && (r[k] as number) >= 0)) {
    return { tally: { passed: 0, failed: 1, skipped: 0 }, note: " (results.json is not a vitest report: counted as 1 failure)" };
  }
  const report = r as JsonReport;
  const tally = { passed: report.numPassedTests, failed: report.numFailedTests, skipped: report.numPendingTests + report.numTodoTests };
  const notes: string[] = [];
  if (tally.passed + tally.failed === 0) {
    tally.failed += 1;
    notes.push("no tests ran: counted as 1 failure");
  } else if (exitCode !== 0 && tally.failed === 0) {
    tally.failed += 1; // e.g. an unhandled error outside any test
    notes.push(`vitest exited ${exitCode}: counted as 1 failure`);
  }
  // Not an else-branch: the total's "N skipped (counted as failed above)" must be true in every case.
  if (fullRun && tally.skipped > 0) {
    tally.failed += tally.skipped;
    notes.push(`a full run skipped ${tally.skipped}: counted as failures`);
  }
  const note = notes.length ? ` (${notes.join("; ")})` : "";
  return { tally, note };
}

/**
 * A kernel that reported an Oops or BUG on its console counts one failure more, whatever its tests
 * said: the fault may have killed only a process a test expected to die.
 */
export function withKernelFaults(result: { tally: Tally; note: string }, faults: readonly string[]): { tally: Tally; note: string } {
  if (faults.length === 0) return result;
  const tally = { ...result.tally, failed: result.tally.failed + 1 };
  return { tally, note: `${result.note}; the kernel reported a fault, counted as 1 failure: ${faults[0]!.trim()}` };
}
