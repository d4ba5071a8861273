// How a guest's vitest report becomes a kernel's result: nothing that did not run counts as a pass.
import { describe, expect, it } from "vitest";
import { tallyReport, withKernelFaults } from "./tally.js";

const report = (passed: number, failed: number, pending = 0, todo = 0) => JSON.stringify({ numPassedTests: passed, numFailedTests: failed, numPendingTests: pending, numTodoTests: todo, success: failed === 0 });

describe("tallyReport", () => {
  it("passes a clean run, fails on failures", () => {
    expect(tallyReport(report(120, 0), 0, true)).toEqual({ tally: { passed: 120, failed: 0, skipped: 0 }, note: "" });
    expect(tallyReport(report(119, 1), 1, true).tally.failed).toBe(1);
  });

  it("a full run that skipped tests fails; a filtered run may skip (found by review)", () => {
    expect(tallyReport(report(1, 0, 120), 0, true)).toEqual({ tally: { passed: 1, failed: 120, skipped: 120 }, note: " (a full run skipped 120: counted as failures)" });
    expect(tallyReport(report(3, 0, 6), 0, false)).toEqual({ tally: { passed: 3, failed: 0, skipped: 6 }, note: "" });
    expect(tallyReport(report(3, 0, 0, 1), 0, true).tally.failed).toBe(1);
  });

  it("a report that is not a vitest report, or not JSON, fails (found by review: {} passed as NaN)", () => {
    for (const text of ["{}", "[]", "null", JSON.stringify({ numPassedTests: "5", numFailedTests: 0, numPendingTests: 0, numTodoTests: 0 }), report(-1, 0)]) {
      expect(tallyReport(text, 0, true).tally.failed, text).toBe(1);
      expect(tallyReport(text, 0, true).note, text).toMatch(/not a vitest report/);
    }
    expect(tallyReport('{"numPassedTests": 1', 0, true)).toMatchObject({ tally: { failed: 1 }, note: expect.stringMatching(/^ \(results\.json is not JSON: .*; counted as 1 failure\)$/) });
  });

  it("no tests, or a non-zero exit without a failed test, fails", () => {
    expect(tallyReport(report(0, 0), 0, false).note).toBe(" (no tests ran: counted as 1 failure)");
    expect(tallyReport(report(5, 0), 1, false)).toEqual({ tally: { passed: 5, failed: 1, skipped: 0 }, note: " (vitest exited 1: counted as 1 failure)" });
  });
});

describe("tallyReport: skipped tests in a full run always count (found by review)", () => {
  it("also when vitest exited non-zero or no test ran", () => {
    expect(tallyReport(report(80, 0, 40), 1, true).tally).toEqual({ passed: 80, failed: 41, skipped: 40 });
    expect(tallyReport(report(0, 0, 84), 0, true).tally).toEqual({ passed: 0, failed: 85, skipped: 84 });
  });
});

describe("withKernelFaults (review by helper-105)", () => {
  it("a kernel Oops fails a run whose tests all passed, naming the first report", () => {
    const clean = tallyReport(report(120, 0), 0, true);
    expect(withKernelFaults(clean, [])).toEqual(clean);
    expect(withKernelFaults(clean, ["[   41.2] BUG: kernel NULL pointer dereference, address: 0000000000000008 ", "[   41.3] Oops: 0000 [#1] PREEMPT SMP"])).toEqual({
      tally: { passed: 120, failed: 1, skipped: 0 },
      note: "; the kernel reported a fault, counted as 1 failure: [   41.2] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    });
  });
});
