import { soak } from "@apiary/test-support/soak";
import { expect, it } from "vitest";

// The soak's short version (issue #21): 3 minutes of placements, claims, kills, runs and resuming
// subscribers over 3 queens on PostgreSQL and 4 hives under random partitions and queen kills,
// then every invariant (packages/test-support/src/invariants.ts). The seed is printed to replay it;
// SOAK_LOGS=DIR keeps every daemon's output and the history judged.
it("3 minutes of load under random network faults break no invariant", async () => {
	const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);
	console.log(`soak seed ${seed} (CHAOS_SEED=${seed} replays it)`);
	const report = await soak({ seconds: Number(process.env.SOAK_SECONDS ?? 180), seed, log: (s) => console.log(s), logDir: process.env.SOAK_LOGS });
	console.log(JSON.stringify(report));
	expect(report.violations).toEqual([]);
	// It did what it says: load, and faults of each kind over 3 minutes.
	expect(report.ops.place).toBeGreaterThan(50);
	expect(Object.values(report.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(5);
}, 420_000);
