import { execFile } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, tempDir } from "@apiary/test-support/procs";
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
		// ~6 MB/s of numbered 64 KiB lines: 3 s would be ~18 MB uncapped.
		const body = { id: "chatty", command: ["sh", "-c", 'i=0; while :; do i=$((i+1)); printf "%s %065536d\\n" "$i" 0 | cut -c1-65536; sleep 0.01; done'] };
		expect((await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status).toBe(
			201,
		);
		let peak = 0;
		for (let i = 0; i < 30; i++) {
			peak = Math.max(peak, size("chatty"));
			await sleep(100);
		}
		// The cap is 1 MiB for both files; the check runs every 0.2 s, so at most
		// ~0.2 s of output more (~1.3 MB here).
		expect(peak).toBeLessThan(3 * MiB);
		const w = (await json(`${hive.url}/v1/workers/chatty`)).body;
		expect(w.logDroppedBytes).toBeGreaterThan(5 * MiB);
		// The newest output is kept: the last line of the tail is the latest number.
		const tail = await new Promise<string>((resolve) =>
			execFile(process.execPath, [HIVE_BIN, "logs", "chatty", "-n", "2", "--hive", hive.url], { maxBuffer: 8 * MiB }, (_e, out) => resolve(out)),
		);
		const lines = tail.trimEnd().split("\n");
		expect(lines).toHaveLength(2);
		const last = Number(lines[1]!.split(" ")[0]);
		expect(last).toBeGreaterThan(150); // ~250 lines in 3 s; line 1 is long gone
		expect(Number(lines[0]!.split(" ")[0])).toBe(last - 1);
		await json(`${hive.url}/v1/workers/chatty`, { method: "DELETE" });
	});

	it("?tail=N of a quiet worker gives exactly its last N lines", async () => {
		const body = { id: "quiet", command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"] };
		expect((await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).status).toBe(
			201,
		);
		await until(async () => (await json(`${hive.url}/v1/workers/quiet`)).body.exit, 10_000, "exit");
		expect(await (await fetch(`${hive.url}/v1/workers/quiet/logs?tail=2`)).text()).toBe("line-4\nline-5\n");
		expect(await (await fetch(`${hive.url}/v1/workers/quiet/logs`)).text()).toBe("line-1\nline-2\nline-3\nline-4\nline-5\n");
		expect((await fetch(`${hive.url}/v1/workers/quiet/logs?tail=lots`)).status).toBe(400);
	});
});
