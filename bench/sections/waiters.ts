import { join } from "node:path";
import { FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import { holdPlacement, json, removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { cpuOf, ctx, log, pct, r3, sleep } from "../lib.ts";

// Waiting placements (issue #26): N placements that cannot be placed yet,
// each on a constraint pool of its own, posted in a burst with waitMs, while
// an honest hive heartbeats. Figures: the queen's CPU per waiter admitted at
// two queue sizes (O(1) per waiter makes their ratio ~1; O(queue) made it
// ~N2/N1), /healthz latency during the burst, and whether the honest hive
// went stale. A probe of the earlier queen: 3,000 waiters cost 16.7 s of
// CPU to add, /healthz took 2.8 s and an honest hive went stale twice.
export async function waiters() {
	const sizes = ctx.quick ? [100, 300] : [1000, 5000];
	const out: Record<string, unknown> = {};
	for (const n of sizes) out[`n${n}`] = await burst(n);
	const [a, b] = sizes.map((n) => out[`n${n}`] as { cpuMsPerWaiter: number });
	out.perWaiterRatio = r3(b!.cpuMsPerWaiter / a!.cpuMsPerWaiter);
	log(`   queen CPU per waiter at ${sizes[1]} / at ${sizes[0]}: ${out.perWaiterRatio}× (O(1) per waiter: ~1; O(queue): ~${sizes[1]! / sizes[0]!})`);
	ctx.results.waiters = out;
}

async function burst(n: number) {
	const dir = tempDir("bench-waiters");
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const honest = new FakeHive(queen.url, "honest", { gpus: [gpu(0)] });
	await honest.opened();
	honest.hello();
	let beating = true;
	const beats = (async () => {
		while (beating) {
			honest.heartbeat([worker("busy", { gpus: [gpu(0).uuid] })]);
			await sleep(500);
		}
	})();
	const pending: { destroy(): void }[] = [];
	const health: number[] = [];
	try {
		await sleep(500);
		const pid = queen.proc.pid!;
		const cpu0 = cpuOf(pid).total;
		const t0 = performance.now();
		let admitted = 0;
		// Each POST stays open while its placement waits: the queen counts it once listed.
		for (let i = 0; i < n; i++) {
			pending.push(holdPlacement(queen.url, `w${i}`));
			if (i % 250 === 249) {
				const h0 = performance.now();
				await json(`${queen.url}/healthz`);
				health.push(performance.now() - h0);
			}
		}
		for (let i = 0; i < 600; i++) {
			admitted = (await json<{ pending: unknown[] }>(`${queen.url}/v1/placements`)).body.pending.length;
			if (admitted >= n) break;
			await sleep(100);
		}
		const wall = (performance.now() - t0) / 1000;
		const cpu = cpuOf(pid).total - cpu0;
		const stale = (await json<{ state: string }>(`${queen.url}/v1/hives/honest`)).body.state !== "ready";
		const r = {
			waiters: n,
			admitted,
			wallSeconds: r3(wall),
			queenCpuSeconds: r3(cpu),
			cpuMsPerWaiter: r3((cpu * 1000) / n),
			healthzP99Ms: r3(pct(health, 99)),
			honestHiveStale: stale,
		};
		log(
			`   ${n} waiters: admitted ${admitted} in ${r.wallSeconds} s; queen CPU ${r.queenCpuSeconds} s (${r.cpuMsPerWaiter} ms each); /healthz p99 ${r.healthzP99Ms} ms; honest hive ${stale ? "STALE" : "ready"}`,
		);
		return r;
	} finally {
		for (const req of pending) req.destroy();
		beating = false;
		await beats;
		honest.close();
		await queen.stop();
		removeDir(dir);
	}
}
