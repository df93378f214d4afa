import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

/** Runs no-leftovers.test.ts after every other file of its tier. */
class LeftoversLast extends BaseSequencer {
	override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
		const sorted = await super.sort(files);
		const last = (f: TestSpecification) => f.moduleId.endsWith("no-leftovers.test.ts");
		return [...sorted.filter((f) => !last(f)), ...sorted.filter(last)];
	}
}

// One project per test tier so each can run alone (`vitest run --project unit`).
// unit: pure, no root. integration: real processes, host cgroups, loopback daemons.
// fault: faults and hostile input against real daemons (tmpfs, kills, bad requests).
// vm: cgroup v2 in a qemu guest (run through scripts/cgroup-v2-vm.sh).
// postgres: the queen's PostgreSQL schema on real servers (initdb + pg_ctl).
export default defineConfig({
	test: {
		sequence: { sequencer: LeftoversLast },
		projects: [
			{ test: { name: "unit", include: ["packages/*/test/unit/**/*.test.ts", "bench/test/**/*.test.ts"] } },
			{
				test: {
					name: "integration",
					include: ["packages/*/test/integration/**/*.test.ts", "tests/integration/**/*.test.ts"],
					testTimeout: 60_000,
					hookTimeout: 60_000,
					fileParallelism: false,
					globalSetup: ["tests/leftovers.setup.ts"],
				},
			},
			{
				test: {
					name: "fault",
					include: ["tests/fault/**/*.test.ts"],
					testTimeout: 120_000,
					hookTimeout: 60_000,
					fileParallelism: false,
					globalSetup: ["tests/leftovers.setup.ts"],
				},
			},
			{
				test: {
					name: "browser",
					include: ["tests/browser/**/*.test.ts"],
					testTimeout: 60_000,
					hookTimeout: 60_000,
					fileParallelism: false,
				},
			},
			{
				// The queen's PostgreSQL store, against real servers each test file starts and removes.
				test: {
					name: "postgres",
					include: ["packages/*/test/postgres/**/*.test.ts"],
					testTimeout: 60_000,
					hookTimeout: 120_000,
					fileParallelism: false,
				},
			},
			{
				test: {
					name: "vm",
					include: ["packages/*/test/vm/**/*.test.ts"],
					globalSetup: ["tests/leftovers.setup.ts"],
					testTimeout: 180_000,
					hookTimeout: 120_000,
					fileParallelism: false,
				},
			},
		],
	},
});
