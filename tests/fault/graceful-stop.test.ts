import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const hiveCli = (args: string[]) => runCli("hive", args);

// A test suite that traps SIGTERM to write its report must get to write it.
describe("stopping a worker: stop signal, grace period, then SIGKILL", () => {
	const dir = tempDir("fault-stop");
	const root = newCgroupRoot();
	let hive: Daemon;
	const spawn = (body: object) =>
		json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	// Each worker says when its trap is set, so no stop races its installation.
	const trapping = (report: string) => [
		"sh",
		"-c",
		`trap 'echo report-written > ${report}; exit 0' TERM; touch ${report}.ready; while true; do sleep 0.1; done`,
	];
	const ready = (file: string) => until(() => existsSync(`${file}.ready`), 10_000, `${file} ready`);
	beforeAll(async () => {
		hive = await startHive({ name: "fault-stop", stateDir: join(dir, "hive"), cgroupRoot: root, extra: ["--grace", "5s"] });
	});
	afterAll(async () => {
		await hive.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("hive kill: a worker trapping SIGTERM writes its report and exits; the record says graceful", async () => {
		const report = join(dir, "report-kill");
		expect((await spawn({ id: "trap", command: trapping(report) })).status).toBe(201);
		await ready(report);
		const r = await hiveCli(["kill", "trap", "--hive", hive.url]);
		expect(r).toMatchObject({ code: 0, stdout: expect.stringMatching(/^trap killed after .*, gracefully\n$/) });
		expect(readFileSync(report, "utf8")).toBe("report-written\n");
		expect((await json(`${hive.url}/v1/workers/trap`)).body.exit).toMatchObject({ reason: "killed", exitCode: 0, graceful: true });
	});

	it("a worker that ignores SIGTERM is SIGKILLed when its grace period runs out, and the record says so", async () => {
		const flag = join(dir, "stubborn");
		expect(
			(await spawn({ id: "stubborn", command: ["sh", "-c", `trap '' TERM; touch ${flag}.ready; while true; do sleep 0.1; done`], graceMs: 800 })).status,
		).toBe(201);
		await ready(flag);
		const t0 = Date.now();
		const res = await json(`${hive.url}/v1/workers/stubborn`, { method: "DELETE" });
		const took = Date.now() - t0;
		expect(res.body.exit).toMatchObject({ reason: "killed", signal: "SIGKILL", graceful: false });
		expect(took).toBeGreaterThanOrEqual(800); // it was given its grace period
	});

	it("a --timeout stops the same way: the trap runs, reason timeout, graceful", async () => {
		const report = join(dir, "report-timeout");
		const r = await hiveCli(["spawn", "--hive", hive.url, "--id", "late", "--timeout", "1s", "--grace", "3s", "--", ...trapping(report)]);
		expect(r.code).toBe(0);
		const exit = await until(async () => (await json(`${hive.url}/v1/workers/late`)).body.exit, 10_000, "the timeout");
		expect(exit).toMatchObject({ reason: "timeout", exitCode: 0, graceful: true });
		expect(existsSync(report)).toBe(true);
	});

	it("a worker that exits by itself has graceful null: the hive did not stop it", async () => {
		expect((await spawn({ id: "self", command: ["true"] })).status).toBe(201);
		const exit = await until(async () => (await json(`${hive.url}/v1/workers/self`)).body.exit, 10_000, "exit");
		expect(exit).toMatchObject({ reason: "exited", exitCode: 0, graceful: null });
	});
});
