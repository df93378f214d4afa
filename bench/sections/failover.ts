import { join } from "node:path";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, pct, r3, sleep } from "../lib.ts";

// Several queens on one PostgreSQL server: kill -9 the queen a real hive is
// connected to, and time until that hive is ready and connected on another
// queen (goal p99 < 5 s over 20 kills); the killed queen is started again
// on its port each time, so the hive always has somewhere to go.
export async function failover() {
	const kills = ctx.quick ? 2 : 20;
	const dir = tempDir("bench-failover");
	const root = newCgroupRoot();
	let server: Postgres | null = null;
	const queens: Daemon[] = [];
	let hive: Daemon | null = null;
	try {
		server = await startPostgres();
		for (let i = 0; i < 3; i++) queens.push(await startQueen({ db: server.url, sqlite: true, staleAfter: "3s", evictAfter: "60s" }));
		hive = await startHive({ queen: queens.map((q) => q.url).join(","), name: "fo", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "500ms" });
		const ownerOf = async (): Promise<number | null> => {
			for (let i = 0; i < queens.length; i++) {
				const h = (await json<{ state: string; connected: boolean }>(`${queens[i]!.url}/v1/hives/fo`).catch(() => ({ body: null }))).body;
				if (h?.state === "ready" && h.connected) return i;
			}
			return null;
		};
		const times: number[] = [];
		let lost = 0;
		for (let k = 0; k < kills; k++) {
			let owner: number | null = null;
			for (let t = 0; t < 200 && owner === null; t++) {
				owner = await ownerOf();
				if (owner === null) await sleep(50);
			}
			if (owner === null) throw new Error("the hive is connected to no queen");
			const port = queens[owner]!.port;
			const t0 = performance.now();
			queens[owner]!.proc.kill("SIGKILL");
			await queens[owner]!.stop();
			let moved: number | null = null;
			while (moved === null && performance.now() - t0 < 30_000) {
				const o = await ownerOf();
				if (o !== null && o !== owner) moved = o;
				else await sleep(20);
			}
			if (moved === null) throw new Error("the hive did not move within 30 s");
			times.push(performance.now() - t0);
			const h = (await json<{ state: string }>(`${queens[moved]!.url}/v1/hives/fo`)).body;
			if (h.state === "lost") lost++;
			queens[owner] = await startQueen({ db: server.url, sqlite: true, staleAfter: "3s", evictAfter: "60s", port });
		}
		ctx.results.failover = { kills, p50Ms: r3(pct(times, 50)), p99Ms: r3(pct(times, 99)), maxMs: r3(Math.max(...times)), lostAfterMove: lost };
		log(
			`   ${kills} kill -9 of the hive's queen: ready and connected on another queen after p50 ${r3(pct(times, 50))} ms, p99 ${r3(pct(times, 99))} ms, max ${r3(Math.max(...times))} ms (goal p99 < 5 s)`,
		);
	} finally {
		await hive?.stop();
		for (const q of queens) await q.stop();
		await removeCgroupRoot(root);
		await server?.stop();
		removeDir(dir);
	}
}
