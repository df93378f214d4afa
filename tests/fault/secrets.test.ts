import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const HIVE_BIN = new URL("../../packages/hive/bin/hive.js", import.meta.url).pathname;

// A worker's environment may hold secrets and its output is its own: with a
// token configured, nothing but /healthz answers without it, and env values
// never leave the hive — not in its API, not to the queen, not in events.
describe("secrets and output behind the token", () => {
	const dir = tempDir("fault-secrets");
	const root = newCgroupRoot();
	const tokenFile = join(dir, "token");
	let queen: Daemon;
	let hive: Daemon;
	const auth = { authorization: "Bearer s3cret-tok" };
	beforeAll(async () => {
		writeFileSync(tokenFile, "s3cret-tok\n");
		queen = await startQueen({ db: join(dir, "q.db"), tokenFile });
		hive = await startHive({ queen: queen.url, name: "sec", stateDir: join(dir, "hive"), cgroupRoot: root, tokenFile });
	});
	afterAll(async () => {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("every read but /healthz needs the token, on the hive and on the queen", async () => {
		for (const path of ["/v1/workers", "/v1/snapshot", "/v1/workers/x/logs", "/metrics", "/openapi.json"])
			expect((await fetch(`${hive.url}${path}`)).status, path).toBe(401);
		for (const path of ["/v1/hives", "/v1/workers", "/v1/gpus", "/v1/claims", "/v1/events", "/metrics"])
			expect((await fetch(`${queen.url}${path}`)).status, path).toBe(401);
		expect((await fetch(`${hive.url}/healthz`)).status).toBe(200);
		expect((await fetch(`${queen.url}/healthz`)).status).toBe(200);
	});

	it("placing, stopping and reading a worker through the queen need the token; with it they work", async () => {
		const body = JSON.stringify({ id: "placed", command: ["sh", "-c", "echo placed-out; sleep 30"], hive: "sec" });
		const headers = { "content-type": "application/json" };
		expect((await fetch(`${queen.url}/v1/workers`, { method: "POST", headers, body })).status).toBe(401);
		expect((await fetch(`${queen.url}/v1/recommendations`)).status).toBe(401);
		expect((await fetch(`${queen.url}/v1/placements`)).status).toBe(401);
		await until(async () => (await json(`${queen.url}/v1/hives/sec`, { headers: auth })).body.state === "ready", 10_000, "hive ready");
		const placed = await fetch(`${queen.url}/v1/workers`, { method: "POST", headers: { ...headers, ...auth }, body });
		expect(placed.status).toBe(201);
		expect((await fetch(`${queen.url}/v1/workers/placed/logs`)).status).toBe(401);
		expect((await fetch(`${queen.url}/v1/workers/placed`, { method: "DELETE" })).status).toBe(401);
		await until(async () => (await (await fetch(`${queen.url}/v1/workers/placed/logs`, { headers: auth })).text()) === "placed-out\n", 10_000, "output");
		expect((await fetch(`${queen.url}/v1/workers/placed`, { method: "DELETE", headers: auth })).status).toBe(200);
	});

	it("env values never leave the hive: its API shows keys only; the queen and its events never see them", async () => {
		const events = await fetch(`${queen.url}/v1/events`, { headers: auth });
		const spawned = await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { ...auth, "content-type": "application/json" },
			body: JSON.stringify({ id: "sec1", command: ["sh", "-c", "echo started; sleep 30"], env: { SECRET_KEY: "hunter2" } }),
		});
		expect(spawned.status).toBe(201);
		expect(spawned.body.env).toEqual({ SECRET_KEY: "<redacted>" });
		await until(async () => (await json(`${queen.url}/v1/workers/sec1`, { headers: auth })).status === 200, 10_000, "the queen knows sec1");
		await sleep(600); // a few heartbeats
		const seen = [
			JSON.stringify((await json(`${hive.url}/v1/workers`, { headers: auth })).body),
			JSON.stringify((await json(`${hive.url}/v1/workers/sec1`, { headers: auth })).body),
			JSON.stringify((await json(`${hive.url}/v1/snapshot`, { headers: auth })).body),
			JSON.stringify((await json(`${queen.url}/v1/workers`, { headers: auth })).body),
			JSON.stringify((await json(`${queen.url}/v1/workers/sec1`, { headers: auth })).body),
		];
		const reader = events.body!.getReader();
		const decoder = new TextDecoder();
		let stream = "";
		for (let i = 0; i < 20 && !stream.includes("worker.spawned"); i++) {
			const r = await Promise.race([reader.read(), sleep(500).then(() => null)]);
			if (r && !r.done) stream += decoder.decode(r.value, { stream: true });
		}
		await reader.cancel();
		expect(stream).toMatch(/worker\.spawned/);
		for (const text of [...seen, stream]) expect(text).not.toContain("hunter2");
		expect(seen[0]).toContain("SECRET_KEY"); // the key may be shown
		// The output is behind the token too; with it, the CLI reads it.
		expect((await fetch(`${hive.url}/v1/workers/sec1/logs`)).status).toBe(401);
		const logs = await new Promise<{ code: number; stdout: string }>((resolve) =>
			execFile(process.execPath, [HIVE_BIN, "logs", "sec1", "--hive", hive.url, "--token-file", tokenFile], (err, stdout) =>
				resolve({ code: err ? 1 : 0, stdout }),
			),
		);
		expect(logs).toEqual({ code: 0, stdout: "started\n" });
		await json(`${hive.url}/v1/workers/sec1`, { method: "DELETE", headers: auth });
	});
});
