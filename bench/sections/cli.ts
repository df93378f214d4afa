import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, pct, r3, sized } from "../lib.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Wall time of one command, ms; fails loudly if it does not succeed. */
function timed(args: string[]): number {
	const t0 = performance.now();
	const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
	const ms = performance.now() - t0;
	if (r.status !== 0) throw new Error(`${args.join(" ")} exited ${r.status}: ${r.stderr}`);
	return ms;
}

// 8. Client commands against running daemons vs a bare `node -e 0` on the
// same Node, interleaved so the machine's drift hits all three alike. The
// first runs fill Node's compile cache and are not counted.
export async function cliStart() {
	const dir = tempDir("bench-cli");
	const root = newCgroupRoot();
	const queen = await startQueen({ db: join(dir, "q.db") });
	const hive = await startHive({ queen: queen.url, name: "bench-cli", stateDir: join(dir, "hive"), cgroupRoot: root });
	try {
		await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "c0", command: ["sleep", "600"] }),
		});
		const cmds = {
			bare: ["-e", "0"],
			queenWorkers: ["packages/queen/bin/queen.js", "workers", "--queen", queen.url],
			// The token from the hive's state dir, as a person's command reads it (part of what is timed).
			hivePs: ["packages/hive/bin/hive.js", "ps", "--hive", hive.url, "--state-dir", join(dir, "hive")],
		};
		for (const args of Object.values(cmds)) for (let i = 0; i < 2; i++) timed(args);
		const runs = sized(3, 15, 30);
		const ms: Record<keyof typeof cmds, number[]> = { bare: [], queenWorkers: [], hivePs: [] };
		for (let i = 0; i < runs; i++) for (const [k, args] of Object.entries(cmds)) ms[k as keyof typeof cmds].push(timed(args));
		const med = (k: keyof typeof cmds) => pct(ms[k], 50);
		const r = {
			runs,
			bareNodeMedianMs: r3(med("bare")),
			queenWorkersMedianMs: r3(med("queenWorkers")),
			hivePsMedianMs: r3(med("hivePs")),
			queenWorkersOverBare: r3(med("queenWorkers") / med("bare")),
			hivePsOverBare: r3(med("hivePs") / med("bare")),
		};
		ctx.results.cli = r;
		log(
			`   node -e 0 ${r.bareNodeMedianMs.toFixed(0)} ms; queen workers ${r.queenWorkersMedianMs.toFixed(0)} ms (${r.queenWorkersOverBare}×); hive ps ${r.hivePsMedianMs.toFixed(0)} ms (${r.hivePsOverBare}×)  [goal < 300 ms, ≤ 3×]`,
		);
	} finally {
		await hive.stop("SIGKILL");
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	}
}
