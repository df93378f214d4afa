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
// RSS and CPU. At 3× most of the hives then leave at once (a surge ending):
// the rest, half of what the queen found it carries at 1×, must be told
// their own tick again, and the section says how long after the last bye.

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
	/** The governor's heartbeat target when the load ended (at 3×, as the surge left) (heartbeat-pace.ts): --max-heartbeats-per-second, or lower while busy. */
	targetAtEnd: number;
	/** Under load: at 3× the surge's (five sixths or more of the hives), whose window is the loaded one. */
	lifecycle: SimReport["lifecycle"];
	heartbeats: SimReport["heartbeats"];
	markedStale: number;
	markedLost: number;
	refusals: Record<string, number>;
	queenRssPeakBytes: number;
	queenCpuPerHeartbeatMs: number | null;
	/** After the surge left (3× only): the intervals the remaining hives were last told. */
	afterSurge?: Record<string, number>;
	/**
	 * 3× only: the hives that stayed, and how long after the surge's simulator
	 * finished (its byes sent) the last of them was told its own tick again;
	 * null if one was still slowed at the end.
	 */
	recovery?: { stayers: number; ownTickAfterMs: number | null; lifecycleP99Ms?: number | null; targetAtEnd: number };
	elapsedS: number;
}

/** `stayers`: with a surge (3×), the hives that stay after it leaves. */
async function load(factor: number, capacity: number, seconds: number, churn: number, stayers?: number): Promise<Load> {
	const dir = tempDir("bench-overload");
	// The queen's own defaults but for eviction, kept long so a false "lost" shows as hive.lost, not as noise.
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const pid = queen.proc.pid!;
	const rss: number[] = [];
	const sampler = setInterval(() => rss.push(rssOf(pid)), 250);
	const targetNow = async () => Number(/^apiary_queen_heartbeat_target_per_second (\S+)/m.exec(await (await fetch(`${queen.url}/metrics`)).text())?.[1]);
	const heartbeatsTotal = async () => Number(/^apiary_queen_heartbeats_total (\d+)/m.exec(await (await fetch(`${queen.url}/metrics`)).text())?.[1]);
	try {
		const hives = Math.round(factor * capacity);
		// With a surge, the stayers' measured window is the tail after it has left (its byes sent: the queen
		// then takes thousands of them, each evicting 50 workers); they are there all along. Counted from
		// their own join, their window ended with the surge's, whose join takes longer: no tail was seen.
		const surge = stayers !== undefined;
		const stay = stayers ?? hives;
		const tail = Math.max(6, seconds);
		const lastTold = new Map<string, [number, number]>();
		let surgeLeftAt = Number.POSITIVE_INFINITY;
		let targetLoaded = Number.NaN;
		const h0 = await heartbeatsTotal();
		const c0 = cpuOf(pid);
		const t0 = performance.now();
		const left = surge
			? simulate({ queens: [queen.url], hives: hives - stay, workers: 50, seconds, churn: (churn * (hives - stay)) / hives, prefix: "u-" }).then(async (r) => {
					surgeLeftAt = performance.now();
					targetLoaded = await targetNow();
					return r;
				})
			: null;
		const [base, rest] = await Promise.all([
			simulate({
				queens: [queen.url],
				hives: stay,
				workers: 50,
				seconds: surge ? tail : seconds,
				churn: (churn * stay) / hives,
				prefix: "s-",
				onTold: (h, ms) => lastTold.set(h, [ms, performance.now()]),
				...(left ? { windowAfter: left } : {}),
			}),
			left,
		]);
		const elapsed = (performance.now() - t0) / 1000;
		const target = await targetNow();
		const h1 = await heartbeatsTotal();
		const c1 = cpuOf(pid);
		const logged = await loggedEvents(queen.url, "hive.stale,hive.lost", 1000);
		// Under load: the surge's figures at 3× (the stayers' window is after it), else the one fleet's.
		const loaded = rest ?? base;
		const both = rest ? [base, rest] : [base];
		const refusals: Record<string, number> = {};
		for (const r of both) for (const [k, v] of Object.entries(r.refusals)) refusals[k] = (refusals[k] ?? 0) + v;
		const heartbeats = h1 - h0;
		return {
			factor,
			hives,
			workers: hives * 50,
			offeredPerSec: hives,
			joinMs: Math.max(...both.map((r) => r.joinMs ?? Number.NaN)),
			intervals: loaded.intervals,
			heartbeatsPerSec: r3(loaded.heartbeats.sent / loaded.seconds),
			targetAtEnd: r3(surge ? targetLoaded : target),
			lifecycle: loaded.lifecycle,
			heartbeats: loaded.heartbeats,
			markedStale: logged.filter((e) => e.type === "hive.stale").length,
			markedLost: logged.filter((e) => e.type === "hive.lost").length,
			refusals,
			queenRssPeakBytes: Math.max(0, ...rss),
			queenCpuPerHeartbeatMs: heartbeats > 0 ? r3(((c1.total - c0.total) * 1000) / heartbeats) : null,
			...(rest
				? {
						afterSurge: base.intervals,
						recovery: { ...recovery(stay, [...lastTold.values()], surgeLeftAt), lifecycleP99Ms: base.lifecycle.p99Ms, targetAtEnd: r3(target) },
					}
				: {}),
			elapsedS: r3(elapsed),
		};
	} finally {
		clearInterval(sampler);
		await queen.stop();
		removeDir(dir);
	}
}

/** When the last stayer was told its own tick (0) again, after the surge left; null if one was still slowed at the end. */
function recovery(stayers: number, told: [number, number][], leftAt: number): { stayers: number; ownTickAfterMs: number | null } {
	const own = told.length === stayers && told.every(([ms]) => ms === 0);
	return { stayers, ownTickAfterMs: own ? Math.round(Math.max(0, ...told.map(([, at]) => at - leftAt))) : null };
}

export async function overload() {
	const capacity = sized(10, 10, CAPACITY);
	const seconds = sized(3, 3, 20);
	const churn = sized(2, 2, 20);
	const loads: Load[] = [];
	for (const factor of [1, 2, 3]) {
		// The stayers after the 3× surge: half of what the queen found it carries at 1× (its target then), so
		// their own tick is what they must be told again (a sixth of 3× the nominal capacity was more than
		// this machine's queen carries beside the simulator: docs/BENCHMARKS.md row 16).
		const stayers = factor === 3 ? Math.max(1, Math.min(Math.round(capacity / 2), Math.floor(loads[0]!.targetAtEnd / 2))) : undefined;
		const l = await load(factor, capacity, seconds, churn, stayers);
		loads.push(l);
		log(
			`   ${factor}× (${l.hives} hives × 50 workers at 1 Hz): joined in ${l.joinMs} ms; told ${JSON.stringify(l.intervals)} (ms → hives); ${l.heartbeatsPerSec} heartbeats/s sent (target at the end ${l.targetAtEnd}/s); ` +
				`spawns/exits ${l.lifecycle.acked}/${l.lifecycle.sent} acked, p99 ${l.lifecycle.p99Ms} ms; heartbeat ack p99 ${l.heartbeats.p99Ms} ms; ` +
				`marked stale ${l.markedStale}, lost ${l.markedLost}; queen RSS peak ${(l.queenRssPeakBytes / 2 ** 20).toFixed(0)} MiB, ${l.queenCpuPerHeartbeatMs} ms CPU per heartbeat` +
				(l.afterSurge
					? `; after the surge left, the ${l.recovery!.stayers} that stayed told ${JSON.stringify(l.afterSurge)}, ` +
						(l.recovery!.ownTickAfterMs === null ? "some still slowed at the end" : `all their own tick ${l.recovery!.ownTickAfterMs} ms after`) +
						`, their spawns/exits p99 ${l.recovery!.lifecycleP99Ms} ms`
					: ""),
		);
	}
	ctx.results.overload = { capacityPerSec: capacity, loads };
}
