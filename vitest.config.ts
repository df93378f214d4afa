import { defineConfig } from "vitest/config";

// One project per test tier so each can run alone (`vitest run --project unit`).
// unit: pure, no root. integration: real processes, host cgroups, loopback daemons.
// vm: cgroup v2 in a qemu guest (run through scripts/cgroup-v2-vm.sh).
export default defineConfig({
	test: {
		projects: [
			{ test: { name: "unit", include: ["packages/*/test/unit/**/*.test.ts"] } },
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
