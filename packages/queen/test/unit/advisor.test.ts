import { exitedWorker } from "@apiary/test-support/fake-hive";
import { describe, expect, it } from "vitest";
import { Advisor } from "../../src/advise/advisor.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";

// Right-sizing's history: grouped by profile and key labels, bounded, durable.
const GiB = 2 ** 30;
const NOW = Date.parse("2026-11-30T12:00:00Z");
const limits = { cpu: 1, memoryBytes: GiB, pids: null, timeoutMs: 600_000 };
const run = (id: string, o: { suite?: string; shard?: string; profile?: string | null; peakMiB?: number; at?: number } = {}) =>
	exitedWorker(id, {
		startedAt: o.at ?? NOW - 7_200_000,
		durationMs: 60_000,
		peakBytes: (o.peakMiB ?? 300) * 2 ** 20,
		cores: 0.3,
		profile: o.profile === undefined ? "fast_feedback" : o.profile,
		labels: { ...(o.suite ? { suite: o.suite } : {}), ...(o.shard ? { shard: o.shard } : {}) },
		limits,
	});

describe("the run history", () => {
	it("groups runs by profile and the key labels; a label filter selects runs inside groups; profile=none is runs without one", () => {
		const store = new SqliteStore(":memory:");
		const a = new Advisor(store.runs, { keyLabels: ["suite"] });
		for (let i = 0; i < 3; i++)
			for (const w of [run(`a${i}`, { suite: "api", shard: String(i) }), run(`b${i}`, { suite: "ui" }), run(`c${i}`, { profile: null })]) a.record(w, w.exit!);
		const all = a.recommend({}, NOW);
		expect(all.groups.map((g) => [g.profile, g.labels, g.runs])).toEqual(
			expect.arrayContaining([
				["fast_feedback", { suite: "api" }, 3],
				["fast_feedback", { suite: "ui" }, 3],
				[null, {}, 3],
			]),
		);
		expect(a.recommend({ label: ["shard", "1"] }, NOW).groups.map((g) => [g.labels, g.runs])).toEqual([[{ suite: "api" }, 1]]);
		expect(a.recommend({ profile: "none" }, NOW).groups.map((g) => g.profile)).toEqual([null]);
		// A run that never ran is not history.
		const failed = run("f");
		expect(a.record(failed, { ...failed.exit!, reason: "spawn-failed" })).toBeNull();
		expect(a.recommend({ label: ["suite", "api"] }, NOW).groups[0]!.runs).toBe(3);
	});

	it("keeps the newest runs per key and a bounded number of keys, in memory and in the store; a new queen loads them", () => {
		const store = new SqliteStore(":memory:");
		const a = new Advisor(store.runs, { keyLabels: ["suite"], runsPerKey: 5, maxKeys: 2 });
		for (let i = 0; i < 8; i++) {
			const w = run(`x${i}`, { suite: "x", peakMiB: 100 + i, at: NOW - 100_000 + i });
			a.record(w, w.exit!);
		}
		const g = a.recommend({}, NOW).groups[0]!;
		expect(g.runs).toBe(5);
		// The newest five kept, newest first.
		expect(g.recommendations.find((r) => r.resource === "memory")!.values).toEqual([107, 106, 105, 104, 103].map((m) => m * 2 ** 20));
		expect(store.runs.all()).toHaveLength(5);
		for (const [i, s] of ["y", "z"].entries()) {
			const w = run(`${s}0`, { suite: s, at: NOW - 50_000 + i });
			a.record(w, w.exit!);
		}
		// Three keys over a bound of two: the one whose newest run is oldest (x) went.
		expect(
			a
				.recommend({}, NOW)
				.groups.map((x) => x.labels.suite)
				.sort(),
		).toEqual(["y", "z"]);
		expect(new Set(store.runs.all().map((r) => r.run.labels.suite))).toEqual(new Set(["y", "z"]));
		const again = new Advisor(store.runs, { keyLabels: ["suite"], runsPerKey: 5, maxKeys: 2 });
		expect(again.recommend({}, NOW)).toEqual(a.recommend({}, NOW));
	});

	it("a group's recommendations are recomputed when a run is added or a minute passed, not on every query", () => {
		const store = new SqliteStore(":memory:");
		const a = new Advisor(store.runs, { keyLabels: ["suite"] });
		for (let i = 0; i < 20; i++) {
			const w = run(`w${i}`, { suite: "s" });
			a.record(w, w.exit!);
		}
		const first = a.recommend({}, NOW).groups[0]!.recommendations;
		expect(a.recommend({}, NOW + 30_000).groups[0]!.recommendations).toBe(first); // the same object: cached
		expect(a.recommend({}, NOW + 61_000).groups[0]!.recommendations).not.toBe(first);
		const before = a.recommend({}, NOW + 62_000).groups[0]!.recommendations;
		const w = run("big", { suite: "s", peakMiB: 900, at: NOW });
		a.record(w, w.exit!);
		const after = a.recommend({}, NOW + 62_500).groups[0]!;
		expect(after.runs).toBe(21);
		expect(after.recommendations.find((r) => r.resource === "memory")!.recommended!).toBeGreaterThan(before.find((r) => r.resource === "memory")!.recommended!);
	});
});
