import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { authFor, type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const HIVE_BIN = new URL("../../packages/hive/bin/hive.js", import.meta.url).pathname;
const MiB = 2 ** 20;

// `yes` once wrote 15 GB to one worker log in 20 s. Logs are capped per
// worker, newest output kept, the dropped bytes recorded; `?tail=` reads
// the end without streaming everything.
describe("worker logs are capped", () => {
	const dir = tempDir("fault-logs");
	const root = newCgroupRoot();
	const logs = join(dir, "hive", "logs");
	let hive: Daemon;
	beforeAll(async () => {
		hive = await startHive({ name: "logcap", stateDir: join(dir, "hive"), cgroupRoot: root, extra: ["--log-max", "1M"] });
	});
	afterAll(async () => {
		await hive.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});
	const size = (id: string) =>
		readdirSync(logs)
			.filter((f) => f.startsWith(`${id}.log`))
			.reduce((n, f) => n + statSync(join(logs, f)).size, 0);

	it("a chatty worker's log stays near its cap, keeps its newest lines and records what it dropped", async () => {
		// 160 numbered 64 KiB lines (10 MiB), at most ~3 MB/s, then exit: a
		// fixed amount, so what is kept and dropped does not hang on how fast
		// a loaded machine runs the loop.
		const lines = 160;
		const script = `i=0; while [ $i -lt ${lines} ]; do i=$((i+1)); printf "%s %065536d\\n" "$i" 0 | cut -c1-65536; sleep 0.02; done`;
		const body = { id: "chatty", command: ["sh", "-c", script] };
		expect((await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status).toBe(
			201,
		);
		let peak = 0;
		let w = (await json(`${hive.url}/v1/workers/chatty`)).body;
		for (const deadline = Date.now() + 60_000; w.exit === null && Date.now() < deadline; w = (await json(`${hive.url}/v1/workers/chatty`)).body) {
			peak = Math.max(peak, size("chatty"));
			await sleep(100);
		}
		expect(w.exit?.exitCode).toBe(0);
		// The cap is 1 MiB for both files; the check runs every 0.2 s, so at most
		// ~0.2 s of output more (~0.7 MB here).
		expect(peak).toBeGreaterThan(0);
		expect(peak).toBeLessThan(3 * MiB);
		// 10 MiB written, at most ~2 MiB kept.
		expect(w.logDroppedBytes).toBeGreaterThan(5 * MiB);
		// The newest output is kept: the tail is the last two lines written.
		const tail = await new Promise<string>((resolve) =>
			execFile(
				process.execPath,
				[HIVE_BIN, "logs", "chatty", "-n", "2", "--hive", hive.url, "--state-dir", join(dir, "hive")],
				{ maxBuffer: 8 * MiB },
				(_e, out) => resolve(out),
			),
		);
		const got = tail.trimEnd().split("\n");
		expect(got).toHaveLength(2);
		expect(got.map((l) => Number(l.split(" ")[0]))).toEqual([lines - 1, lines]);
	});

	it("?tail=N of a quiet worker gives exactly its last N lines", async () => {
		const body = { id: "quiet", command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"] };
		expect((await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status).toBe(
			201,
		);
		await until(async () => (await json(`${hive.url}/v1/workers/quiet`)).body.exit, 10_000, "exit");
		expect(await (await fetch(`${hive.url}/v1/workers/quiet/logs?tail=2`, { headers: authFor(hive.url) })).text()).toBe("line-4\nline-5\n");
		expect(await (await fetch(`${hive.url}/v1/workers/quiet/logs`, { headers: authFor(hive.url) })).text()).toBe("line-1\nline-2\nline-3\nline-4\nline-5\n");
		expect((await fetch(`${hive.url}/v1/workers/quiet/logs?tail=lots`, { headers: authFor(hive.url) })).status).toBe(400);
	});
});
