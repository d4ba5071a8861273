/**
 * The host run's counterpart of test/vm/tally.ts: prints "host: N passed, N failed, N skipped" and,
 * in a full run (no file, name, line, tag or shard filter, as `npm run test:host` in CI), fails the
 * run when any test ended skipped or todo, naming each: such a test did not run where it should
 * have, and vitest alone exits 0 for it. A filtered run only prints the tally, as `-t` marks every
 * test it does not match as skipped. Wired in vitest.config.ts, after the default reporter.
 */
import type { Reporter, TestModule, TestRunEndReason, TestSpecification, Vitest } from 'vitest/node';

export default class HostTallyReporter implements Reporter {
  private vitest: Vitest | undefined;
  private fullRun = false;

  onInit(vitest: Vitest): void {
    this.vitest = vitest;
  }

  async onTestRunStart(specifications: ReadonlyArray<TestSpecification>): Promise<void> {
    this.fullRun = this.vitest !== undefined && (await isFullRun(this.vitest, specifications));
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>, _errors: unknown, reason: TestRunEndReason): void {
    let passed = 0;
    let failed = 0;
    const skipped: string[] = [];
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') passed++;
        else if (result.state === 'failed') failed++;
        else if (result.state === 'skipped') {
          const how = test.options.mode === 'todo' ? 'todo' : result.note ? `skipped: ${result.note}` : 'skipped';
          skipped.push(`${module.relativeModuleId} > ${test.fullName} (${how})`);
        }
      }
    }
    const log = this.vitest?.logger ?? console;
    log.log(`host: ${passed} passed, ${failed} failed, ${skipped.length} skipped`);
    // An interrupted run skips what it did not reach, and fails already.
    if (!this.fullRun || skipped.length === 0 || reason === 'interrupted') return;
    log.error(`host: a full run must run every test; ${skipped.length} ended skipped or todo (counted as failures):\n${skipped.map((s) => `  ${s}`).join('\n')}`);
    process.exitCode = 1;
  }
}

/** No filter narrowed the run: every test file of the config ran, with no test name, line or tag filter. */
async function isFullRun(vitest: Vitest, specifications: ReadonlyArray<TestSpecification>): Promise<boolean> {
  const { config } = vitest;
  if (config.testNamePattern || config.tagsFilter?.length || config.shard) return false;
  if (specifications.some((s) => s.testNamePattern || s.testLines?.length || s.testIds?.length || s.testTagsFilter?.length)) return false;
  // File filters, --changed and --related leave out files: compare with every file the config includes.
  const key = (s: TestSpecification) => `${s.project.name}\0${s.moduleId}`;
  const ran = new Set(specifications.map(key));
  return (await vitest.globTestSpecifications()).every((s) => ran.has(key(s)));
}
