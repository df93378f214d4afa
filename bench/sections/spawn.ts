import { spawn } from "node:child_process";
import { join } from "node:path";
import { EventSource } from "eventsource";
import { json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, sleep, pct, r3, log, sized } from "../lib.ts";

// 3. Spawn → worker.spawned at an SSE subscriber, real daemons; beside it, in
// turns, its floor: a /bin/sh started and ended from this Node process.
export async function spawnToSse() {
	const n = sized(5, 60, 200);
	const dir = tempDir("bench");
	const root = newCgroupRoot();
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const hive = await startHive({ queen: queen.url, name: "b", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "1s" });
	const es = new EventSource(`${queen.url}/v1/events?types=worker.spawned,worker.exited`);
	const arrived = new Map<string, number>();
	const exited = new Set<string>();
	es.addEventListener("worker.spawned", (ev) => arrived.set(JSON.parse(ev.data).workerId, performance.now()));
	es.addEventListener("worker.exited", (ev) => exited.add(JSON.parse(ev.data).workerId));
	try {
		await new Promise((r) => es.addEventListener("snapshot", r));
		for (let i = 0; i < 50; i++)
			if ((await json(`${queen.url}/v1/hives/b`)).body?.state === "ready") break;
			else await sleep(100);
		const lat: number[] = [];
		const floor: number[] = [];
		const ratios: number[] = [];
		const measureFloor = async () => {
			const t0 = performance.now();
			const c = spawn("/bin/sh", ["-c", "exit 0"], { stdio: "ignore" });
			await new Promise((r) => c.once("exit", r));
			floor.push(performance.now() - t0);
		};
		// One uncounted spawn first: each route's answer serializer is compiled on its first use.
		for (let i = -1; i < n; i++) {
			const id = `s${i + 1}`;
			// In turns, which goes first; each spawn starts once the one before it has ended and its
			// exit reached the queen, so it is measured alone, not beside the last one's clean-up.
			if (i >= 0 && i % 2 === 1) await measureFloor();
			const t0 = performance.now();
			await json(`${hive.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id, command: ["true"] }),
			});
			while (!arrived.has(id)) await sleep(0.2);
			const took = arrived.get(id)! - t0;
			if (i >= 0 && i % 2 === 0) await measureFloor();
			while (!exited.has(id)) await sleep(1);
			if (i < 0) continue;
			lat.push(took);
			ratios.push(took / floor.at(-1)!);
		}
		const overFloorP50 = pct(lat, 50) / pct(floor, 50);
		ctx.results.spawnToSse = {
			spawns: n,
			p50Ms: r3(pct(lat, 50)),
			p99Ms: r3(pct(lat, 99)),
			maxMs: r3(Math.max(...lat)),
			floorP50Ms: r3(pct(floor, 50)),
			overFloorP50: r3(overFloorP50),
			pairedMedianRatio: r3(pct(ratios, 50)),
		};
		log(
			`   ${n} spawns: p50 ${r3(pct(lat, 50))} ms, p99 ${r3(pct(lat, 99))} ms (POST to the hive → event at a subscriber of the queen); floor, a /bin/sh started and ended from Node: p50 ${r3(pct(floor, 50))} ms → ${r3(overFloorP50)}× (median of paired ratios ${r3(pct(ratios, 50))}×)`,
		);
	} finally {
		es.close();
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	}
}
