import { join } from "node:path";
import { packStats } from "@apiary/protocol";
import { Bench } from "tinybench";
import { FakeHive, gpu, stats, worker } from "@apiary/test-support/fake-hive";
import { removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, cpuOf, cpuSecondsOf, launchFloor, log, pct, r3, rssOf, sized, sleep, stat } from "../lib.ts";

// 4. Queen ingest over real WebSockets vs the JSON.parse floor and the
// transport floor (parse + ack on the same ws); 7. queen memory.
interface LoadResult {
	sent: number;
	lat: number[];
	cpuMs: number;
	userMs: number;
	elapsedS: number;
	join: { acked: number; ms: number; cpuMs: number } | null;
	warm: { seconds: number; acked: number; sent: number; ackP99Ms: number; ackMaxMs: number } | null;
}

/** N simulated hives × 50 workers over real WebSockets: optionally all joining at once, then paced at 1 Hz each. */
export async function drive(
	url: string,
	pid: number,
	hives: number,
	seconds: number,
	withJoin: boolean,
	warmup: number,
	/** Called around the measured window (after the join and warm-up). */
	around?: { before(): Promise<void>; after(): Promise<void> },
	/** wss: the CA the queen's certificate is checked against. */
	ca?: Buffer,
): Promise<LoadResult> {
	const fakes: FakeHive[] = [];
	try {
		for (let i = 0; i < hives; i++) fakes.push(new FakeHive(url, `h${i}`, { gpus: [gpu(0), gpu(1)], ca }));
		await Promise.all(fakes.map((h) => h.opened()));
		for (const h of fakes) h.hello();
		const sentAt = new Map<string, number>();
		const lat: number[] = [];
		for (const h of fakes) {
			h.ws.on("message", (d) => {
				const m = JSON.parse(d.toString());
				const k = `${h.hiveId}/${m.seq}`;
				const t = sentAt.get(k);
				if (t !== undefined) {
					lat.push(performance.now() - t);
					sentAt.delete(k);
				}
			});
		}
		let joinResult: LoadResult["join"] = null;
		if (withJoin) {
			// Join: every hive's first heartbeat (each worker in full: 50
			// worker.spawned events and rows), all at once, as after a queen restart.
			const join0 = performance.now();
			const cpu0 = cpuSecondsOf(pid);
			for (const h of fakes) {
				sentAt.set(`${h.hiveId}/1`, performance.now());
				h.ws.send(
					heartbeatMessage(
						h,
						1,
						benchWorkers.map((w) => ({ ...w, stats: benchStats(Date.now()) })),
					),
				);
			}
			for (let i = 0; i < 600 && lat.length < hives; i++) await sleep(50);
			joinResult = { acked: lat.length, ms: Math.round(performance.now() - join0), cpuMs: Math.round((cpuSecondsOf(pid) - cpu0) * 1000) };
			lat.length = 0;
		}
		// Every hive at 1 Hz, staggered; a worker is sent as a hive sends it
		// after its first heartbeat. The first `warmup` seconds are measured
		// apart: they carry the join's aftermath (the major GCs of the 50,000
		// workers just described); the steady state after them is what the
		// goals are about.
		let seq = 1;
		const pace = async (secs: number) => {
			const start = performance.now();
			let n = 0;
			for (let s = 0; s < secs; s++) {
				seq++;
				for (let i = 0; i < hives; i++) {
					const due = start + s * 1000 + (i * 1000) / hives;
					const wait = due - performance.now();
					if (wait > 1) await sleep(wait);
					const h = fakes[i]!;
					const m = heartbeatMessage(h, seq, tickWorkers(Date.now()));
					sentAt.set(`${h.hiveId}/${seq}`, performance.now());
					h.ws.send(m);
					n++;
				}
			}
			for (let i = 0; i < 200 && lat.length < n; i++) await sleep(50);
			return n;
		};
		let warm: LoadResult["warm"] = null;
		if (warmup > 0) {
			const n = await pace(warmup);
			warm = { seconds: warmup, acked: lat.length, sent: n, ackP99Ms: r3(pct(lat, 99)), ackMaxMs: r3(Math.max(...lat)) };
			lat.length = 0;
		}
		await around?.before();
		const c0 = cpuOf(pid);
		const start = performance.now();
		const sent = await pace(seconds);
		const c1 = cpuOf(pid);
		await around?.after();
		return {
			sent,
			lat,
			cpuMs: (c1.total - c0.total) * 1000,
			userMs: (c1.user - c0.user) * 1000,
			elapsedS: (performance.now() - start) / 1000,
			join: joinResult,
			warm,
		};
	} finally {
		for (const h of fakes) h.close();
	}
}

const benchWorkers = Array.from({ length: 50 }, (_, i) => worker(`w${i}`, { labels: { suite: "e2e" } }));
const benchStats = stats;
/** The workers of a heartbeat after the first: each sent as `{id, state, startedAt, pid, s}`. */
const tickWorkers = (t: number) => benchWorkers.map((w) => ({ id: w.id, state: "running", startedAt: w.startedAt, pid: w.pid, s: packStats(benchStats(t)) }));

const heartbeatMessage = (h: FakeHive, seq: number, workers: unknown[]) =>
	JSON.stringify({
		type: "heartbeat",
		seq,
		snapshot: {
			hiveId: h.hiveId,
			instanceId: h.instanceId,
			seq,
			takenAt: new Date().toISOString(),
			tickMs: 0.3,
			driver: { name: "v1", enforced: true, root: null, reason: "" },
			workers,
			gpu: { state: "ok", message: null, ageMs: 5, gpus: h.gpus },
		},
	});

export async function ingest() {
	const hives = Number(process.env.BENCH_HIVES ?? sized(5, 300, 1000));
	const workers = benchWorkers.length;
	const seconds = Number(process.env.BENCH_SECONDS ?? sized(2, 4, 10));
	const warmup = sized(1, 2, 5);
	const dir = tempDir("bench");
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "30s", evictAfter: "300s" });
	let q: LoadResult;
	let rss: number;
	const rssSeen: number[] = [];
	let ingestMeanMs: number;
	try {
		// RSS through the measured window, every 250 ms: the heap's sawtooth
		// between major collections is part of what the queen needs.
		let sampler: NodeJS.Timeout | undefined;
		q = await drive(queen.url, queen.proc.pid!, hives, seconds, true, warmup, {
			before: async () => {
				sampler = setInterval(() => rssSeen.push(rssOf(queen.proc.pid!)), 250);
			},
			after: async () => clearInterval(sampler),
		});
		const metrics = await (await fetch(`${queen.url}/metrics`)).text();
		const sum = Number(/apiary_queen_ingest_duration_seconds_sum (\S+)/.exec(metrics)![1]);
		const count = Number(/apiary_queen_ingest_duration_seconds_count (\S+)/.exec(metrics)![1]);
		ingestMeanMs = (sum / count) * 1000;
		rss = rssOf(queen.proc.pid!);
	} finally {
		await queen.stop();
		removeDir(dir);
	}
	const floorProc = await launchFloor();
	let f: LoadResult;
	try {
		f = await drive(floorProc.url, floorProc.pid, hives, seconds, false, warmup);
	} finally {
		floorProc.stop();
	}
	const sample = heartbeatMessage({ hiveId: "h0", instanceId: "inst-h0", gpus: [gpu(0), gpu(1)] } as FakeHive, 2, tickWorkers(Date.now()));
	const parse = new Bench({ time: ctx.quick ? 100 : 1000 });
	parse.add("JSON.parse(heartbeat)", () => {
		JSON.parse(sample);
	});
	await parse.run();
	const parseMs = stat(parse, 0).mean;
	const per = (r: LoadResult) => ({ cpu: r.cpuMs / r.sent, user: r.userMs / r.sent });
	const qp = per(q);
	const fp = per(f);
	ctx.results.ingest = {
		hives,
		workersPerHive: workers,
		messageBytes: Buffer.byteLength(sample),
		join: q.join,
		warmup: q.warm,
		offeredPerSec: r3(q.sent / q.elapsedS),
		acked: q.lat.length,
		sent: q.sent,
		ackP50Ms: r3(pct(q.lat, 50)),
		ackP99Ms: r3(pct(q.lat, 99)),
		ackMaxMs: r3(Math.max(...q.lat)),
		queenCpuPerHeartbeatMs: r3(qp.cpu),
		queenUserCpuPerHeartbeatMs: r3(qp.user),
		capacityPerCoreSec: Math.round(1000 / qp.cpu),
		applyMeanMs: r3(ingestMeanMs),
		parseFloorMs: r3(parseMs),
		overParseFloor: r3(qp.cpu / parseMs),
		userOverParseFloor: r3(qp.user / parseMs),
		transportFloor: { cpuPerHeartbeatMs: r3(fp.cpu), userCpuPerHeartbeatMs: r3(fp.user), acked: f.lat.length, sent: f.sent, ackP99Ms: r3(pct(f.lat, 99)) },
		overTransportFloor: r3(qp.cpu / fp.cpu),
		queenRssBytes: rss,
		queenRssPeakBytes: Math.max(rss, ...rssSeen),
	};
	ctx.results.memory = {
		...(ctx.results.memory as object),
		queenRssBytes: rss,
		queenRssPeakBytes: Math.max(rss, ...rssSeen),
		queenHives: hives,
		queenWorkers: hives * workers,
	};
	if (q.join) log(`   join: ${q.join.acked}/${hives} first heartbeats (every worker in full) acked in ${q.join.ms} ms, ${q.join.cpuMs} ms queen CPU`);
	if (q.warm) log(`   the ${q.warm.seconds} s after it: ${q.warm.acked}/${q.warm.sent} acked, ack p99 ${q.warm.ackP99Ms} ms, max ${q.warm.ackMaxMs} ms`);
	log(
		`   ${hives} hives × ${workers} workers at 1 Hz (${Buffer.byteLength(sample)} B each): ${q.lat.length}/${q.sent} acked, ack p50 ${r3(pct(q.lat, 50))} ms p99 ${r3(pct(q.lat, 99))} ms max ${r3(Math.max(...q.lat))} ms`,
	);
	log(
		`   queen CPU ${r3(qp.cpu)} ms per heartbeat (user ${r3(qp.user)}) → ${Math.round(1000 / qp.cpu)} heartbeats/s per core; queen RSS ${(rss / 2 ** 20).toFixed(0)} MiB at the end, at most ${(Math.max(rss, ...rssSeen) / 2 ** 20).toFixed(0)} MiB in the measured ${seconds} s`,
	);
	log(
		`   floors: JSON.parse ${r3(parseMs)} ms → ${r3(qp.cpu / parseMs)}× (user ${r3(qp.user / parseMs)}×); parse + ack on the same ws ${r3(fp.cpu)} ms (user ${r3(fp.user)}; ${f.lat.length}/${f.sent} acked, ack p99 ${r3(pct(f.lat, 99))} ms) → ${r3(qp.cpu / fp.cpu)}×`,
	);
}
