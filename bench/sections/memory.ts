import { join } from "node:path";
import { FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, sleep, log, rssOf } from "../lib.ts";

// 7. Hive memory with 100 workers (a real hive process).
export async function hiveMemory() {
	const n = ctx.quick ? 5 : 100;
	const dir = tempDir("bench");
	const root = newCgroupRoot();
	const queen = await startQueen({ db: join(dir, "q.db") });
	const hive = await startHive({ queen: queen.url, name: "m", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "1s", nvidiaSmi: FAKE_SMI("a100x8") });
	try {
		const idle = rssOf(hive.proc.pid!);
		for (let i = 0; i < n; i++)
			await json(`${hive.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id: `m${i}`, command: ["sleep", "600"], memoryBytes: 64 << 20 }),
			});
		await sleep(ctx.quick ? 1500 : 5000);
		const rss = rssOf(hive.proc.pid!);
		ctx.results.memory = { ...(ctx.results.memory as object), hiveRssBytes: rss, hiveIdleRssBytes: idle, hiveWorkers: n };
		log(`   hive RSS ${(rss / 2 ** 20).toFixed(1)} MiB with ${n} workers (${(idle / 2 ** 20).toFixed(1)} MiB with none)`);
	} finally {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	}
}
