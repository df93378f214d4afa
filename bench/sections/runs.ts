import { join } from "node:path";
import type { RunView } from "@apiary/protocol";
import { EventSource } from "eventsource";
import { json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, r3, sleep, sized } from "../lib.ts";

// Sharded runs, real daemons on loopback (issue #20): N shards of `true` on
// two hives, from the POST /v1/runs to run.finished at a subscriber, beside
// two peers in the same run: the same N workers placed one at a time (what a
// CI script does without runs: POST, answer, next; to the last exit), and the
// hives' own spawn rate (N asked on their APIs at once, to the last exit).
// (A `true` ends before the next worker is placed: with nothing committed on
// either hive, CPU-only work goes to the first by id, so shardsPerHive says
// where they went rather than assuming a spread.)
export async function runs() {
	const n = sized(10, 40, 100);
	const dir = tempDir("bench-runs");
	const roots = [newCgroupRoot(), newCgroupRoot()];
	const queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "3s", evictAfter: "90s" });
	const hives = await Promise.all(
		roots.map((root, i) => startHive({ queen: queen.url, name: `rb${i}`, stateDir: join(dir, `h${i}`), cgroupRoot: root, interval: "1s" })),
	);
	const es = new EventSource(`${queen.url}/v1/events?types=worker.exited,run.finished`);
	const exited = new Set<string>();
	const finished = new Map<string, number>();
	es.addEventListener("worker.exited", (ev) => exited.add(JSON.parse(ev.data).workerId));
	es.addEventListener("run.finished", (ev) => finished.set(JSON.parse(ev.data).data.runId, performance.now()));
	const post = <T>(url: string, body: object) => json<T>(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const allExited = async (ids: string[]) => {
		while (!ids.every((id) => exited.has(id))) await sleep(1);
		return performance.now();
	};
	try {
		await new Promise((r) => es.addEventListener("snapshot", r));
		for (let i = 0; i < 100 && (await json<unknown[]>(`${queen.url}/v1/hives`)).body.length < 2; i++) await sleep(100);
		// The run: one POST, N shards placed as capacity allows (all at once: no --max-parallel).
		let t0 = performance.now();
		const run = await post<RunView>(`${queen.url}/v1/runs`, { command: ["true"], shards: n });
		if (run.status !== 201) throw new Error(`POST /v1/runs: ${run.status} ${JSON.stringify(run.body)}`);
		while (!finished.has(run.body.id)) await sleep(1);
		const runMs = finished.get(run.body.id)! - t0;
		const view = (await json<RunView>(`${queen.url}/v1/runs/${run.body.id}`)).body;
		if (view.state !== "passed") throw new Error(`run ${view.id} ${view.state}: ${view.message}`);
		const perHive = new Map<string, number>();
		for (const s of view.shards) perHive.set(s.attempts.at(-1)!.hiveId!, (perHive.get(s.attempts.at(-1)!.hiveId!) ?? 0) + 1);
		// Peer 1: N placements one at a time through the queen, to the last worker's exit.
		t0 = performance.now();
		const seq: string[] = [];
		for (let i = 0; i < n; i++) {
			const r = await post(`${queen.url}/v1/workers`, { id: `seq${i}`, command: ["true"] });
			if (r.status !== 201) throw new Error(`placement ${i}: ${r.status} ${JSON.stringify(r.body)}`);
			seq.push(`seq${i}`);
		}
		const seqMs = (await allExited(seq)) - t0;
		// Peer 2: the hives' own APIs, N spawns asked at once (half each), to the last exit.
		t0 = performance.now();
		const own = Array.from({ length: n }, (_, i) => `own${i}`);
		await Promise.all(own.map((id, i) => post(`${hives[i % 2]!.url}/v1/workers`, { id, command: ["true"] })));
		const ownMs = (await allExited(own)) - t0;
		ctx.results.runs = {
			shards: n,
			hives: 2,
			shardsPerHive: Object.fromEntries(perHive),
			runToFinishedMs: r3(runMs),
			oneAtATimeMs: r3(seqMs),
			hivesOwnMs: r3(ownMs),
			vsOneAtATime: r3(runMs / seqMs),
			vsHivesOwn: r3(runMs / ownMs),
		};
		log(
			`   ${n} shards of \`true\` on 2 hives (${[...perHive.values()].join(" + ")}): POST /v1/runs → run.finished ${r3(runMs)} ms; peer, ${n} placements one at a time to the last exit: ${r3(seqMs)} ms (run = ${r3(runMs / seqMs)}×); the hives' own APIs, ${n} spawns at once to the last exit: ${r3(ownMs)} ms (run = ${r3(runMs / ownMs)}×)`,
		);
	} finally {
		es.close();
		for (const h of hives) await h.stop();
		await queen.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	}
}
