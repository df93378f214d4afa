import { randomBytes } from "node:crypto";
import pidusage from "pidusage";
import si from "systeminformation";
import { Bench } from "tinybench";
import { createDriver, detect } from "../../packages/hive/src/cgroup/detect.ts";
import { Hive } from "../../packages/hive/src/hive.ts";
import { StatFile } from "../../packages/hive/src/statfile.ts";
import { removeDir, tempDir } from "@apiary/test-support/procs";
import { ctx, sleep, pct, r3, stat, log, sized } from "../lib.ts";

// 1. Hive tick: Apiary vs the raw-read floor vs pidusage vs systeminformation.
export async function tick() {
	for (const n of sized([5], [100], [10, 100])) {
		const rootName = `apiary-test-bench-${randomBytes(3).toString("hex")}`;
		const stateDir = tempDir("bench");
		const hive = new Hive({ driver: createDriver(detect({ requested: "v1", cgroupRoot: rootName })), stateDir, hiveId: "bench" });
		await hive.start();
		try {
			for (let i = 0; i < n; i++) await hive.spawn({ id: `b${i}`, command: ["sleep", "600"], cpu: 0.5, memoryBytes: 64 << 20 });
			await sleep(200);
			await hive.tick();
			const snap = await hive.tick();
			const pids = snap.workers.map((w) => w.pid!);
			const floorFiles = hive
				.readerFiles()
				.flat()
				.map((p) => new StatFile(p));
			const filesPerWorker = floorFiles.length / n;
			const fieldsPerWorker = countMeasured(snap.workers[0]!.stats);
			const bench = new Bench({ time: sized(100, 800, 1500), warmupTime: sized(20, 200, 300) });
			bench.add("floor: same files, raw pread", () => {
				for (const f of floorFiles) f.readRaw();
			});
			bench.add("apiary: hive.tick()", async () => {
				await hive.tick();
			});
			bench.add("pidusage(pids)", async () => {
				await pidusage(pids);
			});
			const siBench = new Bench({ time: ctx.quick ? 100 : 2000, iterations: 3 });
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
			for (let i = 0; i < sized(20, 300, 600); i++) {
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
			ctx.results[`tick_${n}`] = r;
			log(
				`   ${n} workers, ${filesPerWorker} files and ${fieldsPerWorker} fields each: apiary ${r.meanMs.apiary} ms (p99 ${r.p99Ms.apiary}), floor ${r.meanMs.floor} ms → ${r.apiaryOverFloor}× floor (paired: median of ratios; ${r.apiaryOverFloorPairedTotals}× of totals; ${r.apiaryOverFloorOfMeans}× of the tinybench means); pidusage ${r.meanMs.pidusage} ms (2 fields), systeminformation ${r.meanMs.systeminformation} ms`,
			);
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
