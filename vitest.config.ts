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
// postgres: the queen on PostgreSQL (real servers, initdb + pg_ctl): its schema, and its suites again.
// perf: the bench's ratios and sizes against bench/budgets.json (bench/gate.ts).
// package: the tarball and the .deb npm run package builds, run and installed (dpkg).
export default defineConfig({
	test: {
		sequence: { sequencer: LeftoversLast },
		projects: [
			{ test: { name: "unit", include: ["packages/*/test/unit/**/*.test.ts", "bench/test/**/*.test.ts"], setupFiles: ["tests/coverage.setup.ts"] } },
			{
				test: {
					name: "integration",
					include: ["packages/*/test/integration/**/*.test.ts", "tests/integration/**/*.test.ts"],
					setupFiles: ["tests/coverage.setup.ts"],
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
					setupFiles: ["tests/coverage.setup.ts"],
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
				// The queen on PostgreSQL: its schema and migration against servers each file starts,
				// and the queen's suites (real daemons and hives) again with every queen on a database
				// of its own on one server the tier starts (tests/postgres.setup.ts).
				test: {
					name: "postgres",
					include: [
						"packages/*/test/postgres/**/*.test.ts",
						"tests/postgres/**/*.test.ts",
						"packages/queen/test/integration/stream.test.ts",
						"packages/queen/test/integration/placement-reconcile.test.ts",
						"tests/integration/fleet.test.ts",
						"tests/integration/placement.test.ts",
						"tests/integration/drain.test.ts",
						"tests/integration/right-sizing.test.ts",
						"tests/integration/no-leftovers.test.ts",
					],
					testTimeout: 60_000,
					hookTimeout: 120_000,
					fileParallelism: false,
					// The server first: started before the run marker is set, it is no test leftover.
					globalSetup: ["tests/postgres.setup.ts", "tests/leftovers.setup.ts"],
				},
			},
			{
				// Real network faults (issue #21): daemons in network namespaces the tests make, partitions
				// from nft rules inside them; every namespace removed (tests/leftovers.setup.ts checks).
				test: {
					name: "chaos",
					include: ["tests/chaos/**/*.test.ts"],
					testTimeout: 120_000,
					hookTimeout: 120_000,
					fileParallelism: false,
					globalSetup: ["tests/leftovers.setup.ts"],
				},
			},
			{
				// The performance gate: bench sections at their --gate sizes against bench/budgets.json.
				test: {
					name: "perf",
					include: ["tests/perf/**/*.test.ts"],
					testTimeout: 240_000,
					fileParallelism: false,
					globalSetup: ["tests/leftovers.setup.ts"],
				},
			},
			{
				// The install: npm run package's tarball run where no node is, its .deb through dpkg (as root).
				test: {
					name: "package",
					include: ["tests/package/**/*.test.ts"],
					testTimeout: 120_000,
					hookTimeout: 640_000,
					fileParallelism: false,
					globalSetup: ["tests/leftovers.setup.ts"],
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
