import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { HiveView } from "@apiary/protocol";
import { simulate } from "@apiary/test-support/fleet-sim";
import { type Daemon, json, removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The fleet simulator (`npm run simulate`, issue #23) against a real queen:
// its hives join, are slowed down by the queen's heartbeat target and send at
// that interval, churn workers whose spawns and exits are acked, and answer
// a placement and a stop the queen sends them.
describe("the fleet simulator", () => {
	const dir = tempDir("sim");
	let queen: Daemon;
	beforeAll(async () => {
		// 20 heartbeats a second at most: 40 hives are told every 2 s.
		queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "1500ms", evictAfter: "10s", extra: ["--max-heartbeats-per-second", "20"] });
	});
	afterAll(async () => {
		await queen?.stop();
		removeDir(dir);
	});

	it("40 hives × 5 workers join, are told 2 s, churn, and run what the queen places on them", async () => {
		const run = simulate({ queens: [queen.url], hives: 40, workers: 5, seconds: 6, churn: 4, gpus: 1, prefix: "t-" });
		const ready = async () => (await json<HiveView[]>(`${queen.url}/v1/hives`)).body.filter((h) => h.id.startsWith("t-") && h.state === "ready").length;
		await until(async () => (await ready()) === 40, 15_000, "40 simulated hives ready");
		const placed = await json<{ hiveId: string; id: string; gpus: string[] }>(`${queen.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "placed-1", command: ["sleep", "60"], gpus: { count: 1 } }),
		});
		expect(placed.status).toBe(201);
		expect(placed.body.hiveId).toMatch(/^t-\d+$/);
		expect(placed.body.gpus).toHaveLength(1);
		const shown = await json<{ state: string; hiveId: string }>(`${queen.url}/v1/workers/placed-1`);
		expect(shown.body).toMatchObject({ state: "running", hiveId: placed.body.hiveId });
		const stopped = await json<{ state: string }>(`${queen.url}/v1/workers/placed-1?hive=${placed.body.hiveId}`, { method: "DELETE" });
		expect(stopped.status).toBe(200);
		await until(async () => (await json<{ state: string }>(`${queen.url}/v1/workers/placed-1`)).body.state === "exited", 5000, "stopped");
		const r = await run;
		expect(r.welcomed).toBe(40);
		expect(r.connectedAtEnd).toBe(40);
		expect(r.refusals).toEqual({});
		// 40 hives ÷ 20 a second: every hive was last told 2000 ms, and sent about that often.
		expect(r.intervals).toEqual({ "2000": 40 });
		expect(r.heartbeats.acked).toBe(r.heartbeats.sent);
		const perHivePerSecond = r.heartbeats.sent / 40 / r.seconds;
		expect(perHivePerSecond).toBeGreaterThan(0.3);
		expect(perHivePerSecond).toBeLessThan(0.7);
		// Churn: about 4 exits a second, each with its replacement's spawn, every one acked.
		expect(r.lifecycle.sent).toBeGreaterThanOrEqual(20);
		expect(r.lifecycle.acked).toBe(r.lifecycle.sent);
		expect(r.commands).toMatchObject({ spawn: 1, stop: 1 });
		// Its own CPU, said so a bench can tell the simulator was not the limit: the join cost
		// something (200 workers encoded, 40 handshakes), and so did the measured window's sends.
		expect(r.cpu.joinSeconds).toBeGreaterThan(0);
		expect(r.cpu.windowCores).toBeGreaterThan(0);
		expect(r.cpu.windowCores).toBeLessThan(2);
		// The queen saw the churn: more workers exited than the one it stopped.
		const exited = await json<unknown[]>(`${queen.url}/v1/workers?state=exited&label=simulated=true&limit=1000`);
		expect(exited.body.length).toBeGreaterThan(10);
	}, 60_000);

	it("npm run simulate refuses bad flags with exit 2, naming the flag, and runs nothing", () => {
		const script = new URL("../../../../scripts/simulate.ts", import.meta.url).pathname;
		const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: "utf8", timeout: 20_000 });
		for (const [args, said] of [
			[["--queen", queen.url], "--hives N"],
			[["--hives", "0", "--queen", queen.url], "--hives N"],
			[["--hives", "3"], "--queen"],
			[["--hives", "3", "--queen", "ftp://x"], "not a queen's base URL"],
			[["--hives", "3", "--queen", queen.url, "--churn=-1"], "--churn must be a number"],
			[["--hives", "3", "--queen", queen.url, "--bogus"], "Unknown option"],
		] as const) {
			const r = run(...args);
			expect(r.status, args.join(" ")).toBe(2);
			expect(r.stderr).toContain(said);
		}
	});
});
