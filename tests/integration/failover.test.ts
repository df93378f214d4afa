import { join } from "node:path";
import type { HiveView } from "@apiary/protocol";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `hive start --queen URL1,URL2`: when its queen is unreachable a hive moves
// to the next, and exit records made during the move are delivered there once.
describe("a hive fails over between queens", () => {
	const dir = tempDir("failover");
	const root = newCgroupRoot();
	let a: Daemon;
	let b: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		a = await startQueen({ db: join(dir, "a.db"), evictAfter: "90s" });
		b = await startQueen({ db: join(dir, "b.db"), evictAfter: "90s" });
		hive = await startHive({ queen: `${a.url},${b.url}`, name: "mover", stateDir: join(dir, "hive"), cgroupRoot: root });
	});
	afterAll(async () => {
		await hive?.stop();
		await a?.stop();
		await b?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});
	const ready = async (q: Daemon) => (await json<HiveView>(`${q.url}/v1/hives/mover`)).body?.state === "ready";

	it("kill -9 its queen: ready on the next within seconds, and an exit made meanwhile arrives there exactly once", async () => {
		await until(() => ready(a), 10_000, "ready on queen A");
		expect(hive.out()).toContain(`queen: ${a.url}, ${b.url}`);
		const spawned = await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "during-move", command: ["sh", "-c", "sleep 1; exit 5"] }),
		});
		expect(spawned.status).toBe(201);
		const t0 = performance.now();
		await a.stop("SIGKILL");
		await until(() => ready(b), 10_000, "ready on queen B");
		const movedMs = performance.now() - t0;
		expect(movedMs).toBeLessThan(5000);
		await until(async () => (await json(`${b.url}/v1/workers/during-move`)).body?.exit?.exitCode === 5, 10_000, "the exit record at B");
		// Replayed from B's log: one worker.exited for it, however often the hive resent it.
		await sleep(1500);
		const ac = new AbortController();
		const res = await fetch(`${b.url}/v1/events?since=0&types=worker.exited&worker=during-move`, { signal: ac.signal });
		let text = "";
		const reader = (async () => {
			const dec = new TextDecoder();
			for await (const chunk of res.body!) text += dec.decode(chunk);
		})().catch(() => {});
		await sleep(500);
		ac.abort();
		await reader;
		expect(text.match(/event: worker\.exited/g)).toHaveLength(1);
	});
});
