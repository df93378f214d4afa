import { Bench } from "tinybench";
import { Advisor } from "../../packages/queen/src/advise/advisor.ts";
import { SqliteStore } from "../../packages/queen/src/store/sqlite.ts";
import { exitedWorker } from "@apiary/test-support/fake-hive";
import { ctx, log, r3, stat } from "../lib.ts";

// Right-sizing: GET /v1/recommendations over 1,000 runs × 50 keys (goal
// < 20 ms) as served (groups recomputed only when a run is added or a minute
// passed), and cold (every group recomputed) beside its floor: sorting each
// group's needs once per resource, the least a quantile-based recommender does.
export async function advise() {
	const keys = ctx.quick ? 5 : 50;
	const perKey = ctx.quick ? 100 : 1000;
	const store = new SqliteStore(":memory:");
	const advisor = new Advisor(store.runs, { keyLabels: ["suite"] });
	const now = Date.now();
	const GiB = 2 ** 30;
	let seed = 1;
	const rnd = () => {
		seed = (seed * 1664525 + 1013904223) >>> 0;
		return seed / 2 ** 32;
	};
	const t0 = performance.now();
	store.tx(() => {
		for (let k = 0; k < keys; k++) {
			for (let i = 0; i < perKey; i++) {
				const w = exitedWorker(`w-${k}-${i}`, {
					startedAt: now - (perKey - i) * 600_000,
					durationMs: 60_000 + rnd() * 240_000,
					peakBytes: (200 + rnd() ** 3 * 1800) * 2 ** 20,
					cores: 0.1 + rnd() * 0.8,
					oom: rnd() < 0.005,
					profile: "core_integration",
					labels: { suite: `suite-${k}` },
					limits: { cpu: 1, memoryBytes: 2 * GiB, pids: null, timeoutMs: 600_000 },
				});
				advisor.record(w, w.exit!);
			}
		}
	});
	const loadMs = performance.now() - t0;
	// The floor: per group, the four resources' needs sorted once.
	const needs = Array.from({ length: keys }, () => Array.from({ length: 4 }, () => Float64Array.from({ length: perKey }, () => rnd())));
	const bench = new Bench({ time: ctx.quick ? 100 : 2000, warmupTime: ctx.quick ? 20 : 300 });
	let size = 0;
	// Cold: every group recomputed (as after a burst of exits): the clock moves past the cache each time.
	let later = now;
	bench
		.add("recommendations, cold", () => {
			later += 61_000;
			advisor.recommend({}, later);
		})
		.add("recommendations, as served (GET: computed at most once a minute or per new run, then JSON)", () => {
			size = JSON.stringify(advisor.recommend({}, later)).length;
		})
		.add("floor: sort the needs", () => {
			for (const g of needs) for (const r of g) Float64Array.from(r).sort();
		});
	await bench.run();
	const cold = stat(bench, 0);
	const q = stat(bench, 1);
	const floor = stat(bench, 2);
	// A fresh queen loads the history from SQLite at start.
	const l0 = performance.now();
	new Advisor(store.runs, { keyLabels: ["suite"] });
	const reloadMs = performance.now() - l0;
	store.close();
	ctx.results.advise = {
		keys,
		runsPerKey: perKey,
		queryMeanMs: r3(q.mean),
		queryP99Ms: r3(q.p99),
		coldMeanMs: r3(cold.mean),
		coldP99Ms: r3(cold.p99),
		floorMeanMs: r3(floor.mean),
		coldVsFloor: r3(cold.mean / floor.mean),
		answerBytes: size,
		recordAllMs: r3(loadMs),
		loadAtStartMs: r3(reloadMs),
	};
	log(
		`   ${keys} keys × ${perKey} runs: query as served ${r3(q.mean)} ms mean, ${r3(q.p99)} ms p99 (goal < 20 ms); cold (every group recomputed) ${r3(cold.mean)} ms mean, ${r3(cold.p99)} ms p99, ${r3(cold.mean / floor.mean)}× the sort floor (${r3(floor.mean)} ms); answer ${size} bytes; recording all ${r3(loadMs)} ms; loading them at start ${r3(reloadMs)} ms`,
	);
}
