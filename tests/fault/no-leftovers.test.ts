import { expect, it } from "vitest";
import { leftoverCgroups, leftoverProcesses, runnerPids } from "../leftovers.setup.ts";

// Runs last in its tier (see the sequencer in vitest.config.ts): every test
// before it must have removed the cgroups it made and ended the processes it
// started, even when it failed.
it("no test cgroup and no test process is left behind", async () => {
	await new Promise((r) => setTimeout(r, 300));
	expect(leftoverCgroups()).toEqual([]);
	expect(leftoverProcesses(process.env.APIARY_TEST_RUN!, runnerPids())).toEqual([]);
});
