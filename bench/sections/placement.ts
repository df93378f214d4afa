import { spawn } from "node:child_process";
import { join } from "node:path";
import type { PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { EventSource } from "eventsource";
import { FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, pct, r3, sleep, sized } from "../lib.ts";

// Placement, real daemons on loopback: POST /v1/workers on the queen →
// worker.spawned at a subscriber (goal p99 < 30 ms), beside its peer in the
// same run, a spawn on the hive's own API; then placements at 100/s on 16
// GPUs for a few seconds, checked afterwards for any GPU held by two workers
// at once (from the exit records' times).
export async function placement() {
	const n = sized(5, 60, 200);
	const seconds = sized(1, 2, 5);
	const dir = tempDir("bench-place");
	const roots = [newCgroupRoot(), newCgroupRoot()];
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const hives = await Promise.all(
		roots.map((root, i) =>
			startHive({ queen: queen.url, name: `p${i}`, stateDir: join(dir, `h${i}`), cgroupRoot: root, interval: "1s", nvidiaSmi: FAKE_SMI("a100x8-idle") }),
		),
	);
	const es = new EventSource(`${queen.url}/v1/events?types=worker.spawned`);
	const arrived = new Map<string, number>();
	es.addEventListener("worker.spawned", (ev) => arrived.set(JSON.parse(ev.data).workerId, performance.now()));
	const post = (url: string, body: object) => json(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	try {
		await new Promise((r) => es.addEventListener("snapshot", r));
		for (let i = 0; i < 100; i++)
			if ((await json(`${queen.url}/v1/gpus?free=true`)).body.length === 16) break;
			else await sleep(100);
		// Interleaved: a placement through the queen, then a spawn on the hive itself.
		const placed: number[] = [];
		const answered: number[] = [];
		const direct: number[] = [];
		for (let i = 0; i < n; i++) {
			let t0 = performance.now();
			const r = await post(`${queen.url}/v1/workers`, { id: `q${i}`, command: ["true"], gpus: { count: 1 } });
			if (r.status !== 201) throw new Error(`placement ${i}: ${r.status} ${JSON.stringify(r.body)}`);
			answered.push(performance.now() - t0);
			while (!arrived.has(`q${i}`)) await sleep(0.2);
			placed.push(arrived.get(`q${i}`)! - t0);
			t0 = performance.now();
			await post(`${hives[0]!.url}/v1/workers`, { id: `d${i}`, command: ["true"] });
			while (!arrived.has(`d${i}`)) await sleep(0.2);
			direct.push(arrived.get(`d${i}`)! - t0);
		}
		// Sustained: 100 placements a second of 1-GPU workers, each waiting its turn if the GPUs are all taken.
		const rate = 100;
		const total = rate * seconds;
		const t0 = performance.now();
		const answers: Promise<{ status: number; body: PlacementAnswer }>[] = [];
		for (let i = 0; i < total; i++) {
			const due = t0 + (i * 1000) / rate;
			const wait = due - performance.now();
			if (wait > 0) await sleep(wait);
			answers.push(post(`${queen.url}/v1/workers`, { id: `r${i}`, command: ["sleep", "0.05"], gpus: { count: 1 }, waitMs: 30_000 }));
		}
		const done = await Promise.all(answers);
		const wall = (performance.now() - t0) / 1000;
		const ok = done.filter((d) => d.status === 201).length;
		// Every GPU's runs, from the exit records: no two may overlap.
		let exited: QueenWorkerView[] = [];
		for (let i = 0; i < 100; i++) {
			exited = (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?state=exited`)).body.filter((w) => w.id.startsWith("r"));
			if (exited.length >= ok) break;
			await sleep(100);
		}
		// By hive and uuid: both hives read the same recording, so their UUIDs are the same.
		const byGpu = new Map<string, [number, number][]>();
		for (const w of exited)
			for (const g of w.gpus) {
				const list = byGpu.get(`${w.hiveId}/${g}`) ?? [];
				list.push([Date.parse(w.exit!.startedAt), Date.parse(w.exit!.endedAt!)]);
				byGpu.set(`${w.hiveId}/${g}`, list);
			}
		let doubleBooked = 0;
		for (const runs of byGpu.values()) {
			runs.sort((a, b) => a[0] - b[0]);
			for (let i = 1; i < runs.length; i++) if (runs[i]![0] < runs[i - 1]![1]) doubleBooked++;
		}
		// The floors under both, from this (small) Node process: one /bin/sh started and ended,
		// one after another (what any spawn costs here, p50 and p99), and 200 started at once (the most
		// processes a second this machine starts from Node, before any cgroup, record or message).
		const floor: number[] = [];
		for (let i = 0; i < sized(5, 60, 200); i++) {
			const t = performance.now();
			const c = spawn("/bin/sh", ["-c", "exit 0"], { stdio: "ignore", detached: true });
			await new Promise((r) => c.once("exit", r));
			floor.push(performance.now() - t);
		}
		const burstN = sized(20, 100, 200);
		const b0 = performance.now();
		const burst: Promise<unknown>[] = [];
		for (let i = 0; i < burstN; i++) {
			const c = spawn("/bin/sh", ["-c", 'exec "$@"', "sh", "sleep", "0.05"], { stdio: "ignore", detached: true });
			burst.push(new Promise((r) => c.once("exit", r)));
		}
		const floorRate = burstN / ((performance.now() - b0) / 1000);
		await Promise.all(burst);
		// The peer: how fast the two hives start workers on their own APIs, all asked at once.
		const peerN = sized(20, 100, 200);
		const p0 = performance.now();
		await Promise.all(Array.from({ length: peerN }, (_, i) => post(`${hives[i % 2]!.url}/v1/workers`, { id: `peer${i}`, command: ["sleep", "0.05"] })));
		const peerRate = peerN / ((performance.now() - p0) / 1000);
		ctx.results.placement = {
			placements: n,
			p50Ms: r3(pct(placed, 50)),
			p99Ms: r3(pct(placed, 99)),
			answerP50Ms: r3(pct(answered, 50)),
			answerP99Ms: r3(pct(answered, 99)),
			directP50Ms: r3(pct(direct, 50)),
			directP99Ms: r3(pct(direct, 99)),
			vsDirectP50: r3(pct(placed, 50) / pct(direct, 50)),
			nodeSpawnFloorP50Ms: r3(pct(floor, 50)),
			nodeSpawnFloorP99Ms: r3(pct(floor, 99)),
			vsFloorP99: r3(pct(placed, 99) / pct(floor, 99)),
			sustained: {
				asked: total,
				placed: ok,
				perSecond: r3(ok / wall),
				gpus: 16,
				doubleBooked,
				runsChecked: exited.length,
				hivesOwnSpawnsPerSecond: r3(peerRate),
				nodeSpawnFloorPerSecond: r3(floorRate),
				vsFloorRate: r3(ok / wall / floorRate),
			},
		};
		log(
			`   ${n} placements: POST on the queen → worker.spawned p50 ${r3(pct(placed, 50))} ms, p99 ${r3(pct(placed, 99))} ms (goal p99 < 30); the answer p50 ${r3(pct(answered, 50))} ms; peer, a spawn on the hive's own API: p50 ${r3(pct(direct, 50))} ms, p99 ${r3(pct(direct, 99))} ms; floor, a /bin/sh started and ended from Node: p50 ${r3(pct(floor, 50))} ms, p99 ${r3(pct(floor, 99))} ms (placement p99 = ${r3(pct(placed, 99) / pct(floor, 99))}× the floor's)`,
		);
		log(
			`   sustained: ${ok}/${total} placed at ${r3(ok / wall)}/s on 16 GPUs over ${r3(wall)} s (goal 100/s); the two hives' own APIs, ${peerN} spawns at once: ${r3(peerRate)}/s; floor, ${burstN} /bin/sh started at once from Node: ${r3(floorRate)}/s (placement = ${r3(ok / wall / floorRate)}× it); GPUs held by two runs at once: ${doubleBooked} (of ${exited.length} runs checked)`,
		);
	} finally {
		es.close();
		for (const h of hives) await h.stop();
		await queen.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	}
}
