// npm run bench [-- --quick] [-- --only tick,heartbeat,...]
// Every figure is measured in this one run, side by side with its floor or
// its peer, so machine noise mostly cancels. Results: bench/results/latest.json.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { packStats } from "@apiary/protocol";
import { EventSource } from "eventsource";
import pidusage from "pidusage";
import si from "systeminformation";
import { Bench } from "tinybench";
import { createDriver, detect } from "../packages/hive/src/cgroup/detect.ts";
import { GpuSampler } from "../packages/hive/src/gpu/sampler.ts";
import { Hive } from "../packages/hive/src/hive.ts";
import { heartbeatWorkers } from "../packages/hive/src/queen-link.ts";
import { parseProcStat } from "../packages/hive/src/proc.ts";
import { StatFile } from "../packages/hive/src/statfile.ts";
import { FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import { FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";

const quick = process.argv.includes("--quick");
const onlyArg = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
const only = onlyArg ? new Set(onlyArg.split(",")) : null;
const results: Record<string, unknown> = {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : Number.NaN;
};
const r3 = (n: number) => Math.round(n * 1000) / 1000;
type Lat = { latency: { mean: number; p99: number } };
const stat = (b: Bench, i: number) => (b.tasks[i]!.result as unknown as Lat).latency;
const log = (s: string) => process.stdout.write(`${s}\n`);
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
/** CPU seconds of a process: total, and user space alone (the kernel's share is receiving and sending bytes). */
const cpuOf = (pid: number) => {
	const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, "latin1"));
	return { total: (s.utimeTicks + s.stimeTicks) / 100, user: s.utimeTicks / 100 };
};
const cpuSecondsOf = (pid: number) => cpuOf(pid).total;
/** CPU time of this process's waited-for children (cutime + cstime), seconds. */
const childrenCpuSeconds = () => {
	const rest = readFileSync("/proc/self/stat", "latin1").split(") ")[1]!.split(" ");
	return (Number(rest[13]) + Number(rest[14])) / 100;
};

async function section(name: string, fn: () => Promise<void>) {
	if (only && !only.has(name)) return;
	log(`\n== ${name}`);
	const t0 = performance.now();
	await fn();
	log(`   (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

// 1. Hive tick: Apiary vs the raw-read floor vs pidusage vs systeminformation.
async function tick() {
	for (const n of quick ? [5] : [10, 100]) {
		const rootName = `apiary-test-bench-${randomBytes(3).toString("hex")}`;
		const stateDir = tempDir("bench");
		const hive = new Hive({ driver: createDriver(detect({ requested: "v1", cgroupRoot: rootName })), stateDir, hiveId: "bench" });
		await hive.start();
		try {
			for (let i = 0; i < n; i++) hive.spawn({ id: `b${i}`, command: ["sleep", "600"], cpu: 0.5, memoryBytes: 64 << 20 });
			await sleep(200);
			await hive.tick();
			const snap = await hive.tick();
			const pids = snap.workers.map((w) => w.pid!);
			const floorFiles = hive.readerFiles().flat().map((p) => new StatFile(p));
			const filesPerWorker = floorFiles.length / n;
			const fieldsPerWorker = countMeasured(snap.workers[0]!.stats);
			const bench = new Bench({ time: quick ? 100 : 1500, warmupTime: quick ? 20 : 300 });
			bench.add("floor: same files, raw pread", () => {
				for (const f of floorFiles) f.readRaw();
			});
			bench.add("apiary: hive.tick()", async () => {
				await hive.tick();
			});
			bench.add("pidusage(pids)", async () => {
				await pidusage(pids);
			});
			const siBench = new Bench({ time: quick ? 100 : 2000, iterations: 3 });
			siBench.add("systeminformation.processLoad('sleep')", async () => {
				await si.processLoad("sleep");
			});
			await bench.run();
			await siBench.run();
			pidusage.clear();
			// Paired: floor and tick back to back, alternating which goes first, so
			// the noise of this shared machine (it drifts over seconds) hits both
			// sides of each ratio alike; the median of the per-round ratios.
			const pairs: number[] = [];
			let floorSum = 0;
			let tickSum = 0;
			for (let i = 0; i < (quick ? 20 : 600); i++) {
				const t0 = performance.now();
				if (i % 2 === 0) for (const f of floorFiles) f.readRaw();
				else await hive.tick();
				const t1 = performance.now();
				if (i % 2 === 0) await hive.tick();
				else for (const f of floorFiles) f.readRaw();
				const t2 = performance.now();
				const [fl, tk] = i % 2 === 0 ? [t1 - t0, t2 - t1] : [t2 - t1, t1 - t0];
				pairs.push(tk / fl);
				floorSum += fl;
				tickSum += tk;
			}
			const mean = (b: Bench, i: number) => stat(b, i).mean;
			const p99 = (b: Bench, i: number) => stat(b, i).p99;
			const floor = mean(bench, 0);
			const apiary = mean(bench, 1);
			const pu = mean(bench, 2);
			const sys = mean(siBench, 0);
			const perField = (ms: number, fields: number) => (ms * 1000) / (n * fields);
			const r = {
				workers: n,
				filesPerWorker,
				fieldsPerWorker,
				meanMs: { floor: r3(floor), apiary: r3(apiary), pidusage: r3(pu), systeminformation: r3(sys) },
				p99Ms: { floor: r3(p99(bench, 0)), apiary: r3(p99(bench, 1)), pidusage: r3(p99(bench, 2)) },
				apiaryOverFloor: r3(pct(pairs, 50)),
				apiaryOverFloorPairsP10P90: [r3(pct(pairs, 10)), r3(pct(pairs, 90))],
				apiaryOverFloorPairedTotals: r3(tickSum / floorSum),
				apiaryOverFloorOfMeans: r3(apiary / floor),
				pidusageOverApiary: r3(pu / apiary),
				systeminformationOverApiary: r3(sys / apiary),
				perFieldUs: { apiary: r3(perField(apiary, fieldsPerWorker)), pidusage: r3(perField(pu, 2)) },
			};
			results[`tick_${n}`] = r;
			log(`   ${n} workers, ${filesPerWorker} files and ${fieldsPerWorker} fields each: apiary ${r.meanMs.apiary} ms (p99 ${r.p99Ms.apiary}), floor ${r.meanMs.floor} ms → ${r.apiaryOverFloor}× floor (paired: median of ratios; ${r.apiaryOverFloorPairedTotals}× of totals; ${r.apiaryOverFloorOfMeans}× of the tinybench means); pidusage ${r.meanMs.pidusage} ms (2 fields), systeminformation ${r.meanMs.systeminformation} ms`);
			log(`   per field: apiary ${r.perFieldUs.apiary} µs, pidusage ${r.perFieldUs.pidusage} µs; systeminformation/apiary ${r.systeminformationOverApiary}×`);
			for (const f of floorFiles) f.close();
		} finally {
			for (const w of hive.list()) if (w.state === "running") await hive.kill(w.id).catch(() => {});
			await hive.stop();
			await hive.driver.destroyRoot();
			removeDir(stateDir);
		}
	}
}

function countMeasured(o: unknown): number {
	if (o === null || o === undefined) return 0;
	if (typeof o === "number") return 1;
	if (typeof o !== "object") return 0;
	return Object.entries(o as Record<string, unknown>).reduce((n, [k, v]) => n + (k === "sampledAt" || k === "uptimeMs" ? 0 : countMeasured(v)), 0);
}

// 2. Heartbeat size for 100 workers + 8 GPUs, as the hive sends it.
async function heartbeat() {
	const n = quick ? 10 : 100;
	const rootName = `apiary-test-bench-${randomBytes(3).toString("hex")}`;
	const stateDir = tempDir("bench");
	const gpus = new GpuSampler({ binary: FAKE_SMI("a100x8"), intervalMs: 200 });
	const hive = new Hive({ driver: createDriver(detect({ requested: "v1", cgroupRoot: rootName })), stateDir, hiveId: "bench", gpus });
	await hive.start();
	gpus.start();
	try {
		for (let i = 0; i < n; i++) hive.spawn({ id: `shard-${i}`, command: ["sleep", "600"], cpu: 0.5, memoryBytes: 512 << 20, labels: { suite: "e2e", shard: String(i) } });
		for (let i = 0; i < 50 && gpus.status().gpus.length < 8; i++) await sleep(100);
		await hive.tick();
		await sleep(300);
		const snap = await hive.tick();
		// What the queen link sends: every worker in full on the first heartbeat of a connection, then ticks.
		const announced = new Set<string>();
		const first = JSON.stringify({ type: "heartbeat", seq: 1, snapshot: { ...snap, workers: heartbeatWorkers(hive.unreported(), announced) } });
		const msg = JSON.stringify({ type: "heartbeat", seq: 2, snapshot: { ...snap, workers: heartbeatWorkers(hive.unreported(), announced) } });
		const bytes = Buffer.byteLength(msg);
		const deflated = deflateRawSync(msg).length;
		results.heartbeat = { workers: n, gpus: snap.gpu.gpus.length, bytes, bytesPerWorker: Math.round(bytes / n), deflateBytes: deflated, firstOnConnectionBytes: Buffer.byteLength(first) };
		log(`   ${n} workers + ${snap.gpu.gpus.length} GPUs: ${bytes} bytes JSON per heartbeat (${Math.round(bytes / n)} per worker; ${deflated} deflated); the first on a connection, all in full: ${Buffer.byteLength(first)} bytes`);
	} finally {
		gpus.stop();
		for (const w of hive.list()) if (w.state === "running") await hive.kill(w.id).catch(() => {});
		await hive.stop();
		await hive.driver.destroyRoot();
		removeDir(stateDir);
	}
}

// 3. Spawn → worker.spawned at an SSE subscriber, real daemons.
async function spawnToSse() {
	const n = quick ? 5 : 200;
	const dir = tempDir("bench");
	const root = newCgroupRoot();
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const hive = await startHive({ queen: queen.url, name: "b", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "1s" });
	const es = new EventSource(`${queen.url}/v1/events?types=worker.spawned`);
	const arrived = new Map<string, number>();
	es.addEventListener("worker.spawned", (ev) => arrived.set(JSON.parse(ev.data).workerId, performance.now()));
	try {
		await new Promise((r) => es.addEventListener("snapshot", r));
		for (let i = 0; i < 50; i++) if ((await json(`${queen.url}/v1/hives/b`)).body?.state === "ready") break; else await sleep(100);
		const lat: number[] = [];
		for (let i = 0; i < n; i++) {
			const id = `s${i}`;
			const t0 = performance.now();
			await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id, command: ["true"] }) });
			while (!arrived.has(id)) await sleep(0.2);
			lat.push(arrived.get(id)! - t0);
		}
		results.spawnToSse = { spawns: n, p50Ms: r3(pct(lat, 50)), p99Ms: r3(pct(lat, 99)), maxMs: r3(Math.max(...lat)) };
		log(`   ${n} spawns: p50 ${r3(pct(lat, 50))} ms, p99 ${r3(pct(lat, 99))} ms (POST to the hive → event at a subscriber of the queen)`);
	} finally {
		es.close();
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	}
}

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
async function drive(url: string, pid: number, hives: number, seconds: number, withJoin: boolean, warmup: number): Promise<LoadResult> {
	const fakes: FakeHive[] = [];
	try {
		for (let i = 0; i < hives; i++) fakes.push(new FakeHive(url, `h${i}`, { gpus: [gpu(0), gpu(1)] }));
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
				h.ws.send(heartbeatMessage(h, 1, benchWorkers.map((w) => ({ ...w, stats: benchStats(Date.now()) }))));
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
		const c0 = cpuOf(pid);
		const start = performance.now();
		const sent = await pace(seconds);
		const c1 = cpuOf(pid);
		return { sent, lat, cpuMs: (c1.total - c0.total) * 1000, userMs: (c1.user - c0.user) * 1000, elapsedS: (performance.now() - start) / 1000, join: joinResult, warm };
	} finally {
		for (const h of fakes) h.close();
	}
}

const benchWorkers = Array.from({ length: 50 }, (_, i) => worker(`w${i}`, { labels: { suite: "e2e" } }));
const benchStats = (t: number) => ({
	sampledAt: t,
	uptimeMs: 1000,
	cpu: { usageNs: t * 1000, percent: 12.5, periods: 100, throttledPeriods: 3, throttledNs: 1000 },
	memory: { currentBytes: 1 << 26, peakBytes: 1 << 27, workingSetBytes: 1 << 25, anonBytes: 1 << 25, fileBytes: 1 << 20, limitBytes: 1 << 29, oomKills: 0 },
	io: { readBytes: 0, writeBytes: t, readOps: 0, writeOps: 1, readBytesPerSec: 0, writeBytesPerSec: 10, readOpsPerSec: 0, writeOpsPerSec: 1 },
	pids: { current: 3, limit: null },
	pressure: { cpu: null, memory: null, io: null },
	gpuMemoryMiB: null,
});
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

async function ingest() {
	const hives = Number(process.env.BENCH_HIVES ?? (quick ? 5 : 1000));
	const workers = benchWorkers.length;
	const seconds = Number(process.env.BENCH_SECONDS ?? (quick ? 2 : 10));
	const warmup = quick ? 1 : 5;
	const dir = tempDir("bench");
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "30s", evictAfter: "300s" });
	let q: LoadResult;
	let rss: number;
	let ingestMeanMs: number;
	try {
		q = await drive(queen.url, queen.proc.pid!, hives, seconds, true, warmup);
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
	const parse = new Bench({ time: quick ? 100 : 1000 });
	parse.add("JSON.parse(heartbeat)", () => {
		JSON.parse(sample);
	});
	await parse.run();
	const parseMs = stat(parse, 0).mean;
	const per = (r: LoadResult) => ({ cpu: r.cpuMs / r.sent, user: r.userMs / r.sent });
	const qp = per(q);
	const fp = per(f);
	results.ingest = {
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
	};
	results.memory = { ...(results.memory as object), queenRssBytes: rss, queenHives: hives, queenWorkers: hives * workers };
	if (q.join) log(`   join: ${q.join.acked}/${hives} first heartbeats (every worker in full) acked in ${q.join.ms} ms, ${q.join.cpuMs} ms queen CPU`);
	if (q.warm) log(`   the ${q.warm.seconds} s after it: ${q.warm.acked}/${q.warm.sent} acked, ack p99 ${q.warm.ackP99Ms} ms, max ${q.warm.ackMaxMs} ms`);
	log(`   ${hives} hives × ${workers} workers at 1 Hz (${Buffer.byteLength(sample)} B each): ${q.lat.length}/${q.sent} acked, ack p50 ${r3(pct(q.lat, 50))} ms p99 ${r3(pct(q.lat, 99))} ms max ${r3(Math.max(...q.lat))} ms`);
	log(`   queen CPU ${r3(qp.cpu)} ms per heartbeat (user ${r3(qp.user)}) → ${Math.round(1000 / qp.cpu)} heartbeats/s per core; queen RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
	log(`   floors: JSON.parse ${r3(parseMs)} ms → ${r3(qp.cpu / parseMs)}× (user ${r3(qp.user / parseMs)}×); parse + ack on the same ws ${r3(fp.cpu)} ms (user ${r3(fp.user)}; ${f.lat.length}/${f.sent} acked, ack p99 ${r3(pct(f.lat, 99))} ms) → ${r3(qp.cpu / fp.cpu)}×`);
}

/** The transport floor server (bench/ws-floor.ts) as a child process. */
async function launchFloor(): Promise<{ url: string; pid: number; stop(): void }> {
	const proc = spawn(process.execPath, [new URL("./ws-floor.ts", import.meta.url).pathname], { stdio: ["ignore", "pipe", "inherit"] });
	const url = await new Promise<string>((resolve, reject) => {
		let out = "";
		proc.stdout!.on("data", (d) => {
			out += d;
			const m = /listening on (\S+)/.exec(out);
			if (m) resolve(m[1]!);
		});
		proc.once("exit", (code) => reject(new Error(`ws-floor exited ${code}`)));
	});
	return { url, pid: proc.pid!, stop: () => proc.kill("SIGTERM") };
}

// 5. SSE fan-out to many subscribers: delivery latency and loss.
async function fanout() {
	const subs = quick ? 10 : 500;
	const events = quick ? 10 : 100;
	const dir = tempDir("bench");
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "30s", evictAfter: "300s" });
	const sources: EventSource[] = [];
	try {
		const got: Map<number, number>[] = [];
		const lat: number[] = [];
		for (let i = 0; i < subs; i++) {
			const es = new EventSource(`${queen.url}/v1/events?types=worker.updated`);
			const seen = new Map<number, number>();
			got.push(seen);
			es.addEventListener("worker.updated", (ev) => {
				const e = JSON.parse(ev.data);
				seen.set(e.id, 1);
				lat.push(Date.now() - (e.data.stats.sampledAt as number));
			});
			sources.push(es);
		}
		await Promise.all(sources.map((es) => new Promise((r) => es.addEventListener("snapshot", r, { once: true }))));
		const h = new FakeHive(queen.url, "fan");
		await h.opened();
		h.hello();
		for (let i = 0; i < events; i++) {
			h.heartbeat([worker("w", { stats: { sampledAt: Date.now() } as never })]);
			await sleep(20);
		}
		// The first heartbeat spawns the worker; each later one is a worker.updated.
		for (let i = 0; i < 200 && lat.length < subs * (events - 1); i++) await sleep(50);
		const ids = new Set<number>();
		for (const g of got) for (const id of g.keys()) ids.add(id);
		const lost = subs * ids.size - got.reduce((n, g) => n + g.size, 0);
		results.fanout = { subscribers: subs, events: ids.size, delivered: lat.length, lost, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99) };
		log(`   ${subs} subscribers × ${ids.size} events: ${lat.length} deliveries, ${lost} lost; latency p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms`);
		h.close();
	} finally {
		for (const es of sources) es.close();
		await queen.stop();
		removeDir(dir);
	}
}

// 6. GPU sampling: one long-lived --loop-ms reader vs one exec per tick.
async function gpuSampling() {
	const seconds = quick ? 1 : 5;
	const interval = 100;
	// Loop mode: the child's CPU over the window, per block of readings.
	const sampler = new GpuSampler({ binary: FAKE_SMI("a100x8"), intervalMs: interval });
	sampler.start();
	for (let i = 0; i < 50 && sampler.status().gpus.length < 8; i++) await sleep(100);
	const pid = (sampler as unknown as { child: { pid: number } }).child.pid;
	const c0 = cpuSecondsOf(pid);
	const self0 = process.cpuUsage();
	await sleep(seconds * 1000);
	const loopCpu = cpuSecondsOf(pid) - c0 + (process.cpuUsage(self0).user + process.cpuUsage(self0).system) / 1e6 / 2;
	sampler.stop();
	const loopSamples = (seconds * 1000) / interval;
	// Exec per tick: the same query, one process each time.
	const n = quick ? 3 : 20;
	const e0 = childrenCpuSeconds();
	const w0 = performance.now();
	for (let i = 0; i < n; i++) {
		await new Promise<void>((resolve, reject) =>
			execFile(FAKE_SMI("a100x8"), ["--query-gpu=index,uuid,name,memory.used,utilization.gpu,power.draw", "--format=csv,noheader,nounits"], (err) => (err ? reject(err) : resolve())),
		);
	}
	const execWallMs = (performance.now() - w0) / n;
	const execCpu = (childrenCpuSeconds() - e0) / n;
	const loopPer = loopCpu / loopSamples;
	results.gpu = { loopCpuMsPerSample: r3(loopPer * 1000), execCpuMsPerSample: r3(execCpu * 1000), execWallMsPerSample: r3(execWallMs), execOverLoop: r3(execCpu / loopPer) };
	log(`   loop mode ${r3(loopPer * 1000)} ms CPU per sample (upper bound: half this process's CPU counted); exec per tick ${r3(execCpu * 1000)} ms CPU, ${r3(execWallMs)} ms wall → ${r3(execCpu / loopPer)}× cheaper in loop mode`);
}

// 7. Hive memory with 100 workers (a real hive process).
async function hiveMemory() {
	const n = quick ? 5 : 100;
	const dir = tempDir("bench");
	const root = newCgroupRoot();
	const queen = await startQueen({ db: join(dir, "q.db") });
	const hive = await startHive({ queen: queen.url, name: "m", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "1s", nvidiaSmi: FAKE_SMI("a100x8") });
	try {
		const idle = rssOf(hive.proc.pid!);
		for (let i = 0; i < n; i++) await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: `m${i}`, command: ["sleep", "600"], memoryBytes: 64 << 20 }) });
		await sleep(quick ? 1500 : 5000);
		const rss = rssOf(hive.proc.pid!);
		results.memory = { ...(results.memory as object), hiveRssBytes: rss, hiveIdleRssBytes: idle, hiveWorkers: n };
		log(`   hive RSS ${(rss / 2 ** 20).toFixed(1)} MiB with ${n} workers (${(idle / 2 ** 20).toFixed(1)} MiB with none)`);
	} finally {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	}
}

const t0 = performance.now();
await section("tick", tick);
await section("heartbeat", heartbeat);
await section("spawn", spawnToSse);
await section("ingest", ingest);
await section("fanout", fanout);
await section("gpu", gpuSampling);
await section("memory", hiveMemory);
const out = {
	date: new Date().toISOString(),
	command: `npm run bench${quick ? " -- --quick" : ""}`,
	machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryBytes: totalmem(), node: process.version, kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim() },
	quick,
	totalSeconds: r3((performance.now() - t0) / 1000),
	results,
};
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const file = new URL(quick ? "./results/quick.json" : "./results/latest.json", import.meta.url);
if (only) {
	// A partial run updates its sections and keeps the others.
	try {
		const prev = JSON.parse(readFileSync(file, "utf8"));
		out.results = { ...prev.results, ...results };
		out.command = `${out.command} -- --only=${onlyArg} (merged into the previous full run)`;
	} catch {}
}
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
log(`\ndone in ${out.totalSeconds} s → bench/results/${quick ? "quick" : "latest"}.json`);
process.exit(0);
