import { join } from "node:path";
import { simulate, type SimReport } from "@apiary/test-support/fleet-sim";
import { loggedEvents, removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { cpuOf, ctx, log, r3, rssOf, sized } from "../lib.ts";

// 16. A queen past its capacity (issue #23): simulated hives × 50 workers at
// 1 Hz offering 1×, 2× and 3× what one queen takes on this machine, with
// worker churn, each on a fresh queen with its default flags (stale-after
// 3 s, --max-heartbeats-per-second 1000). Measured: the intervals the queen
// told, the heartbeats it took a second, lifecycle acks (spawns, exits) at
// p99, hives it marked stale or lost (from its event log: must be 0), its
// RSS and CPU. At 3× a surge of two thirds of the hives then leaves: the
// rest must be told the interval their own number calls for.

/** One queen's intake on one core, heartbeats of 50 workers a second (docs/BENCHMARKS.md row 4: 2,278 measured). */
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 2000);

interface Load {
	factor: number;
	hives: number;
	workers: number;
	offeredPerSec: number;
	joinMs: number | null;
	intervals: Record<string, number>;
	heartbeatsPerSec: number;
	/** The governor's heartbeat target when the load ended (heartbeat-pace.ts): --max-heartbeats-per-second, or lower while busy. */
	targetAtEnd: number;
	lifecycle: SimReport["lifecycle"];
	heartbeats: SimReport["heartbeats"];
	markedStale: number;
	markedLost: number;
	refusals: Record<string, number>;
	queenRssPeakBytes: number;
	queenCpuPerHeartbeatMs: number | null;
	/** After the surge left (3× only): the intervals the remaining hives were last told. */
	afterSurge?: Record<string, number>;
	elapsedS: number;
}

async function load(factor: number, capacity: number, seconds: number, churn: number, surge: boolean): Promise<Load> {
	const dir = tempDir("bench-overload");
	// The queen's own defaults but for eviction, kept long so a false "lost" shows as hive.lost, not as noise.
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const pid = queen.proc.pid!;
	const rss: number[] = [];
	const sampler = setInterval(() => rss.push(rssOf(pid)), 250);
	const heartbeatsTotal = async () => Number(/^apiary_queen_heartbeats_total (\d+)/m.exec(await (await fetch(`${queen.url}/metrics`)).text())?.[1]);
	try {
		const hives = Math.round(factor * capacity);
		// With a surge, a sixth stays as long again after it (at full size, under the target): it sees the load fall,
		// after the queen has taken the five thousand byes (each evicts 50 workers).
		const stay = surge ? Math.round(hives / 6) : hives;
		const tail = surge ? Math.max(6, seconds) : 0;
		const h0 = await heartbeatsTotal();
		const c0 = cpuOf(pid);
		const t0 = performance.now();
		const [base, rest] = await Promise.all([
			simulate({ queens: [queen.url], hives: stay, workers: 50, seconds: seconds + tail, churn: (churn * stay) / hives, prefix: "s-" }),
			surge ? simulate({ queens: [queen.url], hives: hives - stay, workers: 50, seconds, churn: (churn * (hives - stay)) / hives, prefix: "u-" }) : null,
		]);
		const elapsed = (performance.now() - t0) / 1000;
		const target = Number(/^apiary_queen_heartbeat_target_per_second (\S+)/m.exec(await (await fetch(`${queen.url}/metrics`)).text())?.[1]);
		const h1 = await heartbeatsTotal();
		const c1 = cpuOf(pid);
		const logged = await loggedEvents(queen.url, "hive.stale,hive.lost", 1000);
		const both = rest ? [base, rest] : [base];
		const sum = (f: (r: SimReport) => number) => both.reduce((n, r) => n + f(r), 0);
		const merge = (f: (r: SimReport) => Record<string, number>) => {
			const m: Record<string, number> = {};
			for (const r of both) for (const [k, v] of Object.entries(f(r))) m[k] = (m[k] ?? 0) + v;
			return m;
		};
		// The surge's own view of the intervals is the loaded one; the stayers' last word is after it left.
		const lat = (k: "lifecycle" | "heartbeats") => {
			const rs = both.map((r) => r[k]);
			return {
				sent: rs.reduce((n, x) => n + x.sent, 0),
				acked: rs.reduce((n, x) => n + x.acked, 0),
				p50Ms: Math.max(...rs.map((x) => x.p50Ms ?? 0)),
				p99Ms: Math.max(...rs.map((x) => x.p99Ms ?? 0)),
				maxMs: Math.max(...rs.map((x) => x.maxMs ?? 0)),
			};
		};
		const heartbeats = h1 - h0;
		return {
			factor,
			hives,
			workers: hives * 50,
			offeredPerSec: hives,
			joinMs: Math.max(...both.map((r) => r.joinMs ?? Number.NaN)),
			intervals: rest ? rest.intervals : base.intervals,
			heartbeatsPerSec: r3(sum((r) => r.heartbeats.sent) / Math.max(...both.map((r) => r.seconds))),
			targetAtEnd: r3(target),
			lifecycle: lat("lifecycle"),
			heartbeats: lat("heartbeats"),
			markedStale: logged.filter((e) => e.type === "hive.stale").length,
			markedLost: logged.filter((e) => e.type === "hive.lost").length,
			refusals: merge((r) => r.refusals),
			queenRssPeakBytes: Math.max(0, ...rss),
			queenCpuPerHeartbeatMs: heartbeats > 0 ? r3(((c1.total - c0.total) * 1000) / heartbeats) : null,
			...(rest ? { afterSurge: base.intervals } : {}),
			elapsedS: r3(elapsed),
		};
	} finally {
		clearInterval(sampler);
		await queen.stop();
		removeDir(dir);
	}
}

export async function overload() {
	const capacity = sized(10, 10, CAPACITY);
	const seconds = sized(3, 3, 20);
	const churn = sized(2, 2, 20);
	const loads: Load[] = [];
	for (const factor of [1, 2, 3]) {
		const l = await load(factor, capacity, seconds, churn, factor === 3);
		loads.push(l);
		log(
			`   ${factor}× (${l.hives} hives × 50 workers at 1 Hz): joined in ${l.joinMs} ms; told ${JSON.stringify(l.intervals)} (ms → hives); ${l.heartbeatsPerSec} heartbeats/s sent (target at the end ${l.targetAtEnd}/s); ` +
				`spawns/exits ${l.lifecycle.acked}/${l.lifecycle.sent} acked, p99 ${l.lifecycle.p99Ms} ms; heartbeat ack p99 ${l.heartbeats.p99Ms} ms; ` +
				`marked stale ${l.markedStale}, lost ${l.markedLost}; queen RSS peak ${(l.queenRssPeakBytes / 2 ** 20).toFixed(0)} MiB, ${l.queenCpuPerHeartbeatMs} ms CPU per heartbeat` +
				(l.afterSurge ? `; after the surge left, the rest told ${JSON.stringify(l.afterSurge)}` : ""),
		);
	}
	ctx.results.overload = { capacityPerSec: capacity, loads };
}
