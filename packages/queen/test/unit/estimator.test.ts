import { describe, expect, it } from "vitest";
import { CONSTANTS, recommendAll } from "../../src/advise/estimator.ts";
import { binomialCdf, confidence, quantileBounds } from "../../src/advise/order-stats.ts";
import type { RunSummary } from "../../src/advise/run.ts";

// The recommender on synthetic histories: what a CI owner relies on.
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const DAY = 86_400_000;
const NOW = Date.parse("2026-11-30T12:00:00Z");

/** A small seeded PRNG, so the "random" histories are the same every run. */
function rng(seed: number) {
	let s = seed >>> 0;
	return () => {
		s = (s * 1664525 + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}

const run = (o: Partial<RunSummary> = {}): RunSummary => ({
	endedAt: NOW - 3_600_000,
	durationMs: 60_000,
	reason: "exited",
	oomKilled: false,
	profile: "core_integration",
	labels: { suite: "api" },
	limits: { cpu: 1, memoryBytes: GiB, timeoutMs: 600_000 },
	memoryBytes: 400 * MiB,
	avgCores: 0.3,
	p95Cores: 0.5,
	throttledFraction: 0,
	cpuPressure: 0,
	gpuPeakMiB: null,
	...o,
});

const pick = (recs: ReturnType<typeof recommendAll>, r: string) => recs.find((x) => x.resource === r)!;

describe("the recommender", () => {
	it("fewer than 20 runs: no recommendation, and it says so", () => {
		const runs = Array.from({ length: 19 }, () => run());
		for (const rec of recommendAll(runs, { now: NOW }).filter((r) => r.resource !== "gpuMemory")) {
			expect(rec.recommended).toBeNull();
			expect(rec.confidence).toBeNull();
			expect(rec.reason).toMatch(/only 19 runs measured; 20 are needed/);
			expect(rec.values).toHaveLength(19);
		}
		expect(pick(recommendAll(runs, { now: NOW }), "gpuMemory").reason).toBe("no run measured its peak GPU memory yet");
		expect(pick(recommendAll([...runs, run()], { now: NOW }), "memory").recommended).not.toBeNull();
	});

	it("memory is never below the peak of a recent run that was not OOM-killed (200 random histories)", () => {
		const r = rng(7);
		for (let h = 0; h < 200; h++) {
			const n = 20 + Math.floor(r() * 200);
			const runs = Array.from({ length: n }, () =>
				run({ endedAt: NOW - r() * 13 * DAY, memoryBytes: Math.floor((50 + r() ** 4 * 4000) * MiB), oomKilled: r() < 0.02 }),
			).sort((a, b) => b.endedAt - a.endedAt);
			const rec = pick(recommendAll(runs, { now: NOW }), "memory").recommended!;
			const peak = Math.max(...runs.filter((x) => !x.oomKilled).map((x) => x.memoryBytes!));
			expect(rec).toBeGreaterThanOrEqual(peak);
			expect(rec % (16 * MiB)).toBe(0); // rounded up
		}
	});

	it("is monotone in the quantile", () => {
		const r = rng(11);
		for (let h = 0; h < 50; h++) {
			// Old runs (past the floor window), so the quantile alone decides.
			const runs = Array.from({ length: 100 }, () =>
				run({ endedAt: NOW - (15 + r() * 10) * DAY, memoryBytes: Math.floor(r() * 2000 * MiB), avgCores: r() * 2 }),
			);
			let lastMem = 0;
			let lastCpu = 0;
			for (const q of [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]) {
				const recs = recommendAll(runs, { now: NOW, constants: { memoryQuantile: q, cpuQuantile: q } });
				const mem = pick(recs, "memory").recommended!;
				const cpu = pick(recs, "cpu").recommended!;
				expect(mem).toBeGreaterThanOrEqual(lastMem);
				expect(cpu).toBeGreaterThanOrEqual(lastCpu);
				lastMem = mem;
				lastCpu = cpu;
			}
		}
	});

	it("decay makes old outliers fade: 4 GiB peaks 60 days ago do not hold up 500 MiB runs of this week, the same peaks yesterday do", () => {
		const recent = Array.from({ length: 100 }, (_, i) => run({ endedAt: NOW - (i / 100) * 7 * DAY, memoryBytes: (480 + (i % 20)) * MiB }));
		const old = Array.from({ length: 6 }, () => run({ endedAt: NOW - 60 * DAY, memoryBytes: 4 * GiB }));
		const faded = pick(recommendAll([...recent, ...old], { now: NOW }), "memory");
		expect(faded.recommended!).toBeLessThan(GiB);
		expect(faded.recommended!).toBeGreaterThanOrEqual(499 * MiB * 1.15);
		// …and the backtest says those 6 old runs would not have fitted.
		expect(faded.backtest!.oomKilled).toBe(6);
		const fresh = Array.from({ length: 6 }, () => run({ endedAt: NOW - DAY, memoryBytes: 4 * GiB }));
		expect(pick(recommendAll([...recent, ...fresh], { now: NOW }), "memory").recommended!).toBeGreaterThanOrEqual(4 * GiB);
	});

	it("an OOM-killed run counts as a raised lower bound (max(+100 MiB, ×1.2) of its limit), and for 24 h the limit is not lowered", () => {
		const ok = Array.from({ length: 40 }, (_, i) =>
			run({ endedAt: NOW - 20 * DAY - i, memoryBytes: 300 * MiB, limits: { cpu: 1, memoryBytes: 2 * GiB, timeoutMs: null } }),
		);
		const oom = run({
			endedAt: NOW - 2 * 3_600_000,
			oomKilled: true,
			reason: "oom",
			memoryBytes: 2 * GiB,
			limits: { cpu: 1, memoryBytes: 2 * GiB, timeoutMs: null },
		});
		const rec = pick(recommendAll([oom, ...ok], { now: NOW }), "memory");
		expect(rec.recommended!).toBeGreaterThanOrEqual(2 * GiB * 1.2);
		expect(rec.oomRate).toBeCloseTo(1 / 41, 10);
		// A small limit: +100 MiB is the larger bump.
		const small = run({
			endedAt: NOW - 30 * DAY,
			oomKilled: true,
			reason: "oom",
			memoryBytes: 64 * MiB,
			limits: { cpu: 1, memoryBytes: 64 * MiB, timeoutMs: null },
		});
		const many = Array.from({ length: 40 }, () => run({ endedAt: NOW - 30 * DAY, memoryBytes: 10 * MiB }));
		expect(Math.max(...pick(recommendAll([small, ...many], { now: NOW }), "memory").values)).toBe(164 * MiB);
		// Within the hold after an OOM under a 1 GiB limit: not below 1 GiB, even if the runs used little.
		const held = run({ endedAt: NOW - 3_600_000, oomKilled: true, reason: "oom", memoryBytes: null, limits: { cpu: 1, memoryBytes: GiB, timeoutMs: null } });
		const light = Array.from({ length: 40 }, () => run({ endedAt: NOW - 30 * DAY, memoryBytes: 10 * MiB }));
		const h = pick(recommendAll([held, ...light], { now: NOW }), "memory");
		expect(h.recommended!).toBeGreaterThanOrEqual(1.2 * GiB); // the raised bound is recent: a floor
		// A month on, 40 light runs since: the OOM has faded and the limit may drop.
		const since = Array.from({ length: 40 }, () => run({ endedAt: NOW + 39 * DAY, memoryBytes: 10 * MiB }));
		expect(pick(recommendAll([...since, held, ...light], { now: NOW + 40 * DAY }), "memory").recommended!).toBeLessThan(GiB);
	});

	it("confidence grows with runs, as order statistics say (1 − qⁿ when every run fits)", () => {
		const at = (n: number) =>
			pick(
				recommendAll(
					Array.from({ length: n }, (_, i) => run({ memoryBytes: (300 + (i % 50)) * MiB })),
					{ now: NOW },
				),
				"memory",
			).confidence!;
		expect(at(20)).toBeCloseTo(1 - 0.95 ** 20, 10);
		expect(at(20)).toBeLessThan(at(60));
		expect(at(60)).toBeLessThan(at(200));
		expect(at(200)).toBeGreaterThan(0.9999);
		expect(confidence([1, 2, 3, 4], 2.5, 0.5)).toBeCloseTo(binomialCdf(1, 4, 0.5), 12);
		expect(binomialCdf(1, 4, 0.5)).toBeCloseTo(5 / 16, 12);
	});

	it("bounds come from order statistics: none from above until enough runs, and they bracket the recommendation's quantile", () => {
		expect(quantileBounds(20, 0.95, 0.95).upper).toBeNull(); // 1 − 0.95^20 < 0.95
		expect(quantileBounds(59, 0.95, 0.95).upper).toBe(59); // 1 − 0.95^59 ≥ 0.95
		const b = quantileBounds(1000, 0.9, 0.95);
		expect(b.lower!).toBeLessThan(900);
		expect(b.upper!).toBeGreaterThan(900);
		const rec = pick(
			recommendAll(
				Array.from({ length: 200 }, (_, i) => run({ endedAt: NOW - 20 * DAY, avgCores: i / 100 })),
				{ now: NOW },
			),
			"cpu",
		);
		expect(rec.lowerBound!).toBeLessThanOrEqual(rec.recommended!);
		expect(rec.upperBound!).toBeGreaterThanOrEqual(rec.recommended!);
	});

	it("CPU: the p90 of average cores × 1.15, raised for throttled runs, with slack before and after and a backtest", () => {
		const plain = Array.from({ length: 100 }, (_, i) => run({ avgCores: 0.2 + (i % 10) * 0.01 }));
		const c = pick(recommendAll(plain, { now: NOW }), "cpu");
		expect(c.recommended).toBe(0.35); // p90 = 0.28 → ×1.15 = 0.322 → 0.35
		expect(c.current).toBe(1);
		expect(c.throttledRate).toBe(0);
		expect(c.slackBefore!).toBeCloseTo(1 - 0.245, 2);
		expect(c.slackAfter!).toBeLessThan(c.slackBefore!);
		expect(c.backtest!.throttled).toBe(0);
		expect(c.backtest!.freedPerRun).toBeCloseTo(0.65, 10);
		// 100 runs of 60 s with 0.65 cores each not held: 100 × 0.65 × (1/60) core·h.
		expect(c.backtest!.freedUnitHours!).toBeCloseTo((100 * 0.65) / 60, 6);
		const throttled = plain.map((r) => ({ ...r, throttledFraction: 0.5, p95Cores: 0.5, limits: { ...r.limits, cpu: 0.25 } }));
		const t = pick(recommendAll(throttled, { now: NOW }), "cpu");
		expect(t.throttledRate).toBe(1);
		expect(t.recommended!).toBeGreaterThanOrEqual(0.5 * 1.15);
	});

	it("timeout: the p99 duration × 1.5, timed-out runs raised, killed runs left out", () => {
		const runs = Array.from({ length: 100 }, (_, i) => run({ endedAt: NOW - 20 * DAY, durationMs: 60_000 + i * 1000 }));
		const t = pick(recommendAll(runs, { now: NOW }), "timeout");
		expect(t.recommended).toBe(Math.ceil((158_000 * 1.5) / 10_000) * 10_000);
		expect(t.timeoutRate).toBe(0);
		const timedOut = [run({ reason: "timeout", durationMs: 600_000 }), ...runs];
		const tt = pick(recommendAll(timedOut, { now: NOW }), "timeout");
		expect(tt.recommended!).toBeGreaterThanOrEqual(720_000); // 10 min × 1.2, a recent raised bound
		expect(tt.timeoutRate).toBeCloseTo(1 / 101, 10);
		const killed = [run({ reason: "killed", durationMs: 3_600_000 }), ...runs];
		expect(pick(recommendAll(killed, { now: NOW }), "timeout").recommended).toBe(t.recommended);
		// Stopped at its hive's drain deadline: says nothing of how long the suite needs either.
		const drained = [run({ reason: "drained", durationMs: 3_600_000 }), ...runs];
		expect(pick(recommendAll(drained, { now: NOW }), "timeout").recommended).toBe(t.recommended);
	});

	it("GPU memory: from the runs' peak GPU memory, rounded up to whole GiB, no current limit", () => {
		const runs = Array.from({ length: 30 }, (_, i) => run({ gpuPeakMiB: 20_000 + i * 100 }));
		const g = pick(recommendAll(runs, { now: NOW }), "gpuMemory");
		expect(g.current).toBeNull();
		expect(g.recommended! % 1024).toBe(0);
		expect(g.recommended!).toBeGreaterThanOrEqual(22_900);
	});

	it("its constants are the sources' (VPA's margin and OOM bump)", () => {
		expect(CONSTANTS.margin).toBe(1.15);
		expect(CONSTANTS.oomBumpRatio).toBe(1.2);
		expect(CONSTANTS.oomBumpBytes).toBe(100 * MiB);
		expect(CONSTANTS.minRuns).toBe(20);
	});
});
