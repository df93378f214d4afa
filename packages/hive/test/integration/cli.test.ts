import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDriver, detect } from "../../src/cgroup/detect.ts";
import { sleep, until } from "../helpers.ts";

const BIN = new URL("../../bin/hive.js", import.meta.url).pathname;
const rootName = `apiary-test-cli-${process.pid}`;
const stateDir = mkdtempSync(join(tmpdir(), "apiary-test-cli-"));
const port = 17500 + (process.pid % 400);
// The hive's state dir as the default one: the client commands read its API token there, as a person's do.
const env = { ...process.env, APIARY_HIVE: `http://127.0.0.1:${port}`, APIARY_STATE_DIR: stateDir };

function hive(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
	return new Promise((resolve) => {
		execFile(process.execPath, [BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
			resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
		});
	});
}

let daemon: ChildProcess;
let daemonOut = "";
async function startDaemon() {
	daemonOut = "";
	daemon = spawn(
		process.execPath,
		[
			BIN,
			"start",
			"--listen",
			`127.0.0.1:${port}`,
			"--name",
			"cli-hive",
			"--interval",
			"250ms",
			"--cgroup-root",
			rootName,
			"--state-dir",
			stateDir,
			"--nvidia-smi",
			"/nonexistent/nvidia-smi",
			// As before workers ran as another user: these workers write where the test reads (tests/fault/run-as.test.ts covers the default).
			"--worker-user",
			"root",
			"--allow-root-workers",
		],
		{ env, stdio: ["ignore", "pipe", "pipe"] },
	);
	daemon.stdout!.on("data", (d) => {
		daemonOut += d;
	});
	await until(() => daemonOut.includes("listening on"), 20_000, "hive start");
}

// The real `hive` executable, as a user runs it: a daemon process and client commands.
describe("the hive CLI", () => {
	beforeAll(startDaemon);
	afterAll(async () => {
		await hive(["kill", "cli-1"]);
		await hive(["kill", "cli-3"]);
		daemon.kill("SIGTERM");
		await new Promise((r) => daemon.once("exit", r));
		const driver = createDriver(detect({ requested: "v1", cgroupRoot: rootName }));
		for (const id of driver.list()) {
			await driver.killAll(id, 0);
			await driver.remove(id);
		}
		await driver.destroyRoot();
		rmSync(stateDir, { recursive: true, force: true });
	});

	it("hive start reports the driver it chose and that GPUs are absent", () => {
		expect(daemonOut).toMatch(/cgroup driver: v1 \(limits enforced\)/);
		expect(daemonOut).toMatch(/GPUs: none/);
	});

	it("spawn prints the id; ps lists it; logs prints its output; kill ends it", async () => {
		const s = await hive([
			"spawn",
			"--id",
			"cli-1",
			"--cpu",
			"0.5",
			"--memory",
			"128M",
			"--label",
			"suite=cli",
			"--",
			"sh",
			"-c",
			"echo hello from cli; sleep 60",
		]);
		expect(s).toMatchObject({ code: 0, stdout: "cli-1\n" });
		await sleep(600);
		const ps = await hive(["ps"]);
		expect(ps.code).toBe(0);
		expect(ps.stdout).toMatch(/^ID\s+STATE\s+PID\s+CPU%\s+MEM\s+LIMIT/);
		expect(ps.stdout).toMatch(/cli-1\s+running\s+\d+\s+[\d.]+\s+\S+\s+128M/);
		const logs = await until(
			async () => {
				const l = await hive(["logs", "cli-1"]);
				return l.stdout.includes("hello") ? l : null;
			},
			5000,
			"logs",
		);
		expect(logs.stdout).toBe("hello from cli\n");
		const json = JSON.parse((await hive(["ps", "--json", "--label", "suite=cli"])).stdout);
		expect(json[0]).toMatchObject({ id: "cli-1", limits: { cpu: 0.5, memoryBytes: 128 << 20 } });
	});

	it("logs -f follows until the worker exits", async () => {
		await hive(["spawn", "--id", "cli-2", "--", "sh", "-c", "echo a; sleep 0.5; echo b"]);
		const f = await hive(["logs", "-f", "cli-2"]);
		expect(f).toMatchObject({ code: 0, stdout: "a\nb\n" });
	});

	it("a restarted daemon re-adopts the running worker", async () => {
		await hive(["spawn", "--id", "cli-3", "--", "sleep", "60"]);
		const before = JSON.parse((await hive(["ps", "--json"])).stdout).find((w: { id: string }) => w.id === "cli-3");
		daemon.kill("SIGKILL");
		await new Promise((r) => daemon.once("exit", r));
		await startDaemon();
		expect(daemonOut).toMatch(/workers re-adopted: 2/);
		const after = JSON.parse((await hive(["ps", "--json"])).stdout).find((w: { id: string }) => w.id === "cli-3");
		expect(after).toMatchObject({ id: "cli-3", pid: before.pid, state: "running", adopted: true });
		expect((await hive(["ps"])).stdout).toMatch(/cli-3\s+running\*/);
		const k = await hive(["kill", "cli-3"]);
		// Not the hive's child any more: killed for sure, but its wait status is not ours to read.
		expect(k.stdout).toMatch(/^cli-3 killed after/);
		const rec = JSON.parse((await hive(["ps", "-a", "--json"])).stdout).find((w: { id: string }) => w.id === "cli-3");
		expect(rec.exit).toMatchObject({ reason: "killed", exitCode: null, signal: null });
		expect(rec.exit.message).toMatch(/re-adopted/);
	});

	it("bad usage exits 2 with a message naming the flag, and creates nothing", async () => {
		const before = readFileSync(`/sys/fs/cgroup/memory/${rootName}/workers/cgroup.procs`, "utf8");
		const badId = await hive(["spawn", "--id", "../x", "--", "true"]);
		expect(badId.code).toBe(2);
		expect(badId.stderr).toMatch(/--id: id "..\/x" is not valid/);
		const badMem = await hive(["spawn", "--memory", "lots", "--", "true"]);
		expect(badMem.code).toBe(2);
		expect(badMem.stderr).toMatch(/--memory: not a size: "lots"/);
		expect((await hive(["spawn", "--timeout", "soon", "--", "true"])).stderr).toMatch(/--timeout: not a duration/);
		expect((await hive(["spawn", "--cpu", "0", "--", "true"])).stderr).toMatch(/--cpu: expected a positive number/);
		expect((await hive(["spawn", "--cpu", "-1", "--", "true"])).stderr).toMatch(/--cpu/);
		expect((await hive(["spawn", "--profile", "huge", "--", "true"])).stderr).toMatch(/--profile: unknown profile "huge"/);
		expect((await hive(["spawn", "--bogus", "--", "true"])).code).toBe(2);
		expect((await hive(["spawn"])).stderr).toMatch(/no command given/);
		expect((await hive(["frobnicate"])).code).toBe(2);
		// A 404 is the request's fault: exit 2 with the hive's message.
		expect(await hive(["kill", "nobody"])).toMatchObject({ code: 2, stderr: expect.stringMatching(/nobody/) });
		const ids = JSON.parse((await hive(["ps", "-a", "--json"])).stdout).map((w: { id: string }) => w.id);
		expect(ids).not.toContain("x");
		expect(readFileSync(`/sys/fs/cgroup/memory/${rootName}/workers/cgroup.procs`, "utf8")).toBe(before);
		const unreachable = await new Promise<{ code: number; stderr: string }>((resolve) =>
			execFile(process.execPath, [BIN, "ps"], { env: { ...env, APIARY_HIVE: "http://127.0.0.1:1" } }, (err, _o, stderr) =>
				resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr }),
			),
		);
		expect(unreachable.code).toBe(1);
		expect(unreachable.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);
	});

	it("every command has --help naming each flag", async () => {
		const flags: Record<string, string[]> = {
			start: ["--listen", "--name", "--interval", "--cgroup-driver", "--cgroup-root", "--state-dir", "--nvidia-smi", "--token-file", "--queen"],
			spawn: ["--profile", "--cpu", "--memory", "--pids", "--timeout", "--gpus", "--label", "--env", "--id", "--cwd", "--hive"],
			ps: ["--all", "--label", "--json", "--hive"],
			kill: ["--json", "--hive"],
			logs: ["--follow", "--hive"],
		};
		for (const [cmd, list] of Object.entries(flags)) {
			const h = await hive([cmd, "--help"]);
			expect(h.code).toBe(0);
			for (const f of list) expect(h.stdout, `${cmd} --help`).toContain(f);
		}
		expect((await hive(["--help"])).stdout).toMatch(/Commands:/);
	});
});
