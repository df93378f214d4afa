import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, tempDir } from "@apiary/test-support/procs";
import { sleep } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const hiveCli = (args: string[]) => runCli("hive", args);

// Hostile and mistaken spawn requests against a real hive: each is refused
// before any side effect with a 4xx naming the field, and nothing is left
// behind — no worker listed, no cgroup directory, no process.
describe("spawn input a fleet will meet", () => {
	const dir = tempDir("fault-spawn");
	const root = newCgroupRoot();
	let hive: Daemon;
	const cgroupDirs = (id: string) => ["memory", "cpu,cpuacct", "pids"].map((c) => `/sys/fs/cgroup/${c}/${root}/workers/${id}`);
	const post = (body: object) =>
		json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	beforeAll(async () => {
		hive = await startHive({ name: "fault-spawn", stateDir: join(dir, "hive"), cgroupRoot: root });
	});
	afterAll(async () => {
		await hive.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("a cwd that does not exist, or is a file, is a 400 naming cwd; no worker is left running forever", async () => {
		const missing = await post({ id: "nocwd", command: ["sleep", "1"], cwd: "/nonexistent" });
		expect(missing).toMatchObject({ status: 400, body: { error: "Bad Request", message: 'cwd: "/nonexistent" does not exist' } });
		const file = join(dir, "a-file");
		writeFileSync(file, "x");
		const notDir = await post({ id: "filecwd", command: ["sleep", "1"], cwd: file });
		expect(notDir).toMatchObject({ status: 400, body: { message: expect.stringMatching(/^cwd: ".*a-file" is not a directory$/) } });
		const list = (await json(`${hive.url}/v1/workers?state=all`)).body as { id: string }[];
		expect(list.map((w) => w.id)).not.toContain("nocwd");
		expect(list.map((w) => w.id)).not.toContain("filecwd");
		for (const d of [...cgroupDirs("nocwd"), ...cgroupDirs("filecwd")]) expect(existsSync(d)).toBe(false);
	});

	it("absurd limits, NUL bytes and a '..' id are 400s naming the field, and leave no cgroup", async () => {
		expect(await post({ id: "huge", command: ["sleep", "1"], memoryBytes: 1e21 })).toMatchObject({
			status: 400,
			body: { message: expect.stringMatching(/^body\.memoryBytes must be <= 1125899906842624/) },
		});
		expect(await post({ id: "nulenv", command: ["sleep", "1"], env: { A: "x\u0000y" } })).toMatchObject({
			status: 400,
			body: { message: expect.stringMatching(/^body\.env\.A must match pattern/) },
		});
		expect(await post({ id: "nularg", command: ["sleep", "1\u00002"] })).toMatchObject({
			status: 400,
			body: { message: expect.stringMatching(/^body\.command\.1 must match pattern/) },
		});
		expect(await post({ id: "x-..-y", command: ["sleep", "1"] })).toMatchObject({
			status: 400,
			body: { message: expect.stringMatching(/^id "x-\.\.-y" is not valid/) },
		});
		expect(await post({ id: "longtime", command: ["sleep", "1"], timeoutMs: 31 * 24 * 3600 * 1000 })).toMatchObject({
			status: 400,
			body: { message: expect.stringMatching(/^body\.timeoutMs must be <=/) },
		});
		for (const id of ["huge", "nulenv", "nularg", "longtime"]) for (const d of cgroupDirs(id)) expect(existsSync(d)).toBe(false);
		expect(((await json(`${hive.url}/v1/workers?state=all`)).body as unknown[]).length).toBe(0);
	});

	it("the CLI refuses the same before sending (exit 2 naming the flag), and a 400 from the hive is exit 2 too", async () => {
		const memory = await hiveCli(["spawn", "--hive", hive.url, "--memory", "100000000000000000000000", "--", "sleep", "1"]);
		expect(memory).toMatchObject({ code: 2, stderr: expect.stringMatching(/^hive spawn: --memory: must be between/) });
		const pids = await hiveCli(["spawn", "--hive", hive.url, "--pids", "-1", "--", "sleep", "1"]);
		expect(pids).toMatchObject({ code: 2, stderr: 'hive spawn: --pids: expected a positive number, got "-1"\n' });
		const cwd = await hiveCli(["spawn", "--hive", hive.url, "--cwd", "/nonexistent", "--", "sleep", "1"]);
		expect(cwd).toMatchObject({ code: 2, stderr: 'hive spawn: cwd: "/nonexistent" does not exist\n' });
	});

	it("a timeout longer than a Node timer can hold (600 h) does not fire at once", async () => {
		const r = await hiveCli(["spawn", "--hive", hive.url, "--id", "long", "--timeout", "600h", "--", "sleep", "30"]);
		expect(r).toMatchObject({ code: 0, stdout: "long\n" });
		await sleep(1500);
		const w = (await json(`${hive.url}/v1/workers/long`)).body as { state: string; exit: unknown; limits: { timeoutMs: number } };
		expect(w).toMatchObject({ state: "running", exit: null, limits: { timeoutMs: 600 * 3600 * 1000 } });
		expect(hive.err()).not.toMatch(/TimeoutOverflowWarning/);
		await json(`${hive.url}/v1/workers/long`, { method: "DELETE" });
	});
});
