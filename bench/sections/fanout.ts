import { join } from "node:path";
import { EventSource } from "eventsource";
import { FakeHive, stats, worker } from "@apiary/test-support/fake-hive";
import { removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, sleep, pct, log } from "../lib.ts";

// 5. SSE fan-out to many subscribers: delivery latency and loss.
export async function fanout() {
	const subs = ctx.quick ? 10 : 500;
	const events = ctx.quick ? 10 : 100;
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
			h.heartbeat([worker("w", { stats: stats(Date.now()) })]);
			await sleep(20);
		}
		// The first heartbeat spawns the worker; each later one is a worker.updated.
		for (let i = 0; i < 200 && lat.length < subs * (events - 1); i++) await sleep(50);
		const ids = new Set<number>();
		for (const g of got) for (const id of g.keys()) ids.add(id);
		const lost = subs * ids.size - got.reduce((n, g) => n + g.size, 0);
		ctx.results.fanout = { subscribers: subs, events: ids.size, delivered: lat.length, lost, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99) };
		log(`   ${subs} subscribers × ${ids.size} events: ${lat.length} deliveries, ${lost} lost; latency p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms`);
		h.close();
	} finally {
		for (const es of sources) es.close();
		await queen.stop();
		removeDir(dir);
	}
}
