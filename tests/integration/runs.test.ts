import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { QueenWorkerView, RunView } from "@apiary/protocol";
import {
	type Daemon,
	FAKE_SMI,
	json,
	loggedEvents,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	runCli,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Sharded runs end to end (issue #20): `queen run --shards` against a real
// queen and two real hives; shards are real processes in cgroups.
const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;

describe("sharded runs", () => {
	const dir = tempDir("runs");
	const roots: string[] = [];
	const db = join(dir, "queen.db");
	let queen: Daemon;
	const hives = new Map<string, Daemon>();
	const hive = async (name: string) => {
		const root = newCgroupRoot();
		roots.push(root);
		const h = await startHive({
			queen: queen.url,
			name,
			stateDir: join(dir, name),
			cgroupRoot: root,
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
			extra: ["--label", "pool=rs"],
		});
		hives.set(name, h);
		return h;
	};
	const run = (args: string[], command: string) =>
		runCli("queen", ["run", "--queen", queen.url, "--constraint", "pool=rs", ...args, "--", "sh", "-c", command]);
	const runView = async (id: string) => (await json<RunView>(`${queen.url}/v1/runs/${id}`)).body;
	const runIdOf = (stderr: string) => /run (r-[0-9a-f]{8})/.exec(stderr)?.[1] ?? "";

	beforeAll(async () => {
		queen = await startQueen({ db, evictAfter: "3s", staleAfter: "1s" });
		await Promise.all([hive("rs-a"), hive("rs-b")]);
		await until(async () => (await json(`${queen.url}/v1/gpus?free=true`)).body.length === 16, 30_000, "both hives");
	}, 60_000);
	afterAll(async () => {
		for (const h of hives.values()) await h.stop();
		await queen?.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	it("6 shards over 2 hives, 3 at a time: each index once with its environment, lines prefixed, the failing shard's code, a table, --output files, labels, events", async () => {
		const out = join(dir, "out");
		const r = await run(
			["--shards", "6", "--max-parallel", "3", "--gpus", "1", "--output", out],
			'echo "start $APIARY_SHARD $APIARY_SHARD_INDEX $APIARY_SHARD_COUNT $CUDA_VISIBLE_DEVICES"; sleep 1; printf "no newline at the end"; [ "$APIARY_SHARD_INDEX" = 4 ] && exit 5; exit 0',
		);
		expect(r.code, r.stderr).toBe(5);
		const id = runIdOf(r.stderr);
		for (let i = 0; i < 6; i++) {
			const starts = r.stdout.split("\n").filter((l) => l.startsWith(`[${i + 1}/6] start ${i + 1}/6 ${i} 6 GPU-`));
			expect(starts, r.stdout).toHaveLength(1);
			expect(r.stdout).toContain(`[${i + 1}/6] no newline at the end\n`);
			expect(readFileSync(join(out, `shard-${i}.log`), "utf8")).toMatch(new RegExp(`^start ${i + 1}/6 ${i} 6 GPU-.*\\nno newline at the end$`));
		}
		// Never a line of two shards.
		for (const l of r.stdout.split("\n").filter(Boolean)) expect(l).toMatch(/^\[[1-6]\/6\] (start|no newline)/);
		expect(r.stderr).toMatch(/SHARD\s+HIVE\s+RESULT\s+ATTEMPTS\s+DURATION\s+AVG CPU\s+PEAK MEM\s+GPU PEAK MEM/);
		expect(r.stderr).toMatch(/5\/6\s+rs-[ab]\s+failed \(5\)\s+1\s+/);
		const v = await runView(id);
		expect(v).toMatchObject({ state: "failed", exitCode: 5 });
		expect(v.shards.map((s) => s.state)).toEqual(["passed", "passed", "passed", "passed", "failed", "passed"]);
		for (const s of v.shards) expect(["rs-a", "rs-b"]).toContain(s.attempts[0]!.hiveId);
		// At most 3 at once: no instant lies inside 4 shards' lifetimes.
		const spans = v.shards.map((s) => [Date.parse(s.attempts[0]!.startedAt!), Date.parse(s.attempts[0]!.endedAt!)] as const);
		for (const [t] of spans) expect(spans.filter(([a, b]) => a <= t && t < b).length).toBeLessThanOrEqual(3);
		const labelled = (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?state=all&label=run=${id}`)).body;
		expect(labelled.map((w) => w.labels.shard).sort()).toEqual(["0", "1", "2", "3", "4", "5"]);
		const ev = (await loggedEvents(queen.url, "run.*")).filter(
			(e) => (e.data as { runId?: string; run?: { id: string } }).runId === id || (e.data as { run?: { id: string } }).run?.id === id,
		);
		expect(ev[0]!.type).toBe("run.started");
		expect(ev.filter((e) => e.type === "run.shard" && (e.data as { event: string }).event === "started")).toHaveLength(6);
		expect(ev.at(-1)).toMatchObject({ type: "run.finished", data: { state: "failed", exitCode: 5, summary: { passed: 5, failed: 1 } } });
		const list = await runCli("queen", ["runs", "--queen", queen.url]);
		expect(list.stdout).toMatch(new RegExp(`${id}\\s+failed \\(5\\)\\s+6\\s+5\\s+1\\s+0`));
	});

	it("bad input is a 4xx naming the field, or a CLI message and exit 2, and starts nothing", async () => {
		const before = (await json<RunView[]>(`${queen.url}/v1/runs`)).body.length;
		const zero = await json(`${queen.url}/v1/runs`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ shards: 0, command: ["true"] }),
		});
		expect(zero.status).toBe(400);
		expect(zero.body.message).toMatch(/shards/);
		const claim = await json(`${queen.url}/v1/runs`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ shards: 2, command: ["true"], claimId: "c-000000000000" }),
		});
		expect(claim.status).toBe(400);
		expect((await json(`${queen.url}/v1/runs/r-00000000`)).status).toBe(404);
		for (const args of [
			["--shards", "0"],
			["--max-parallel", "2"],
			["--shards", "2", "--detach"],
			["--shards", "2", "--id", "x"],
		]) {
			const r = await run(args, "true");
			expect(r.code, args.join(" ")).toBe(2);
			expect(r.stderr).toMatch(/queen run: /);
		}
		expect((await json<RunView[]>(`${queen.url}/v1/runs`)).body.length).toBe(before);
	});

	it("--fail-fast: the first failure stops the running shards gracefully and cancels the waiting ones", async () => {
		const t0 = Date.now();
		const r = await run(["--shards", "5", "--max-parallel", "3", "--fail-fast"], '[ "$APIARY_SHARD_INDEX" = 0 ] && { sleep 0.5; exit 9; }; exec sleep 60');
		expect(r.code, r.stderr).toBe(9);
		expect(Date.now() - t0).toBeLessThan(30_000);
		const v = await runView(runIdOf(r.stderr));
		expect(v.shards.map((s) => s.state)).toEqual(["failed", "cancelled", "cancelled", "cancelled", "cancelled"]);
		expect(v.shards[3]!.attempts).toHaveLength(0);
		expect(v.message).toMatch(/fail-fast: shard 1\/5 failed/);
	});

	it("--retry-failed: a shard that fails and then passes is flaky, and the run passes", async () => {
		const mark = join(dir, "flaky-mark");
		const r = await run(["--shards", "3", "--retry-failed", "1"], `[ "$APIARY_SHARD_INDEX" = 1 ] && [ ! -e ${mark} ] && { touch ${mark}; exit 3; }; echo ok`);
		expect(r.code, r.stderr).toBe(0);
		expect(existsSync(mark)).toBe(true);
		expect(r.stderr).toMatch(/2\/3\s+rs-[ab]\s+flaky\s+2\s+/);
		const v = await runView(runIdOf(r.stderr));
		expect(v.shards.map((s) => s.state)).toEqual(["passed", "flaky", "passed"]);
		expect(v.shards[1]!.attempts.map((a) => a.result)).toEqual(["failed", "passed"]);
	});

	it("--key: a second queen run with the key attaches to the run the first (killed) started, and prints all of it", async () => {
		const args = [
			"run",
			"--queen",
			queen.url,
			"--constraint",
			"pool=rs",
			"--shards",
			"2",
			"--key",
			"ci-step-7",
			"--",
			"sh",
			"-c",
			'echo "hello $APIARY_SHARD"; sleep 2',
		];
		const first = spawn(process.execPath, [QUEEN_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
		let err1 = "";
		first.stderr.on("data", (d) => (err1 += d));
		const id = await until(() => runIdOf(err1) || null, 15_000, "the run started");
		first.kill("SIGKILL");
		const second = await runCli("queen", args);
		expect(second.code, second.stderr).toBe(0);
		expect(runIdOf(second.stderr)).toBe(id);
		expect(second.stdout).toContain("[1/2] hello 1/2\n");
		expect(second.stdout).toContain("[2/2] hello 2/2\n");
		expect((await runView(id)).shards.every((s) => s.attempts.length === 1)).toBe(true);
		// The same key with another command is refused.
		const other = await runCli("queen", [...args.slice(0, -1), "echo other"]);
		expect(other.code).toBe(2);
		expect(other.stderr).toMatch(/idempotencyKey "ci-step-7" was used for a different run/);
	});

	it("Ctrl-C stops every shard gracefully and exits 130", async () => {
		const c = spawn(
			process.execPath,
			[QUEEN_BIN, "run", "--queen", queen.url, "--constraint", "pool=rs", "--shards", "2", "--", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"],
			{
				stdio: ["ignore", "pipe", "pipe"],
			},
		);
		let err = "";
		c.stderr.on("data", (d) => (err += d));
		const id = await until(() => runIdOf(err) || null, 15_000, "started");
		await until(async () => (await runView(id)).shards.every((s) => s.attempts[0]?.startedAt), 15_000, "both running");
		c.kill("SIGINT");
		const code = await new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
		expect(code).toBe(130);
		const v = await runView(id);
		expect(v.state).toBe("cancelled");
		expect(v.shards.map((s) => s.state)).toEqual(["cancelled", "cancelled"]);
	});

	it("a queen restart mid-run: the run carries on, its waiting shards placed after the restart", async () => {
		const r = spawn(
			process.execPath,
			[QUEEN_BIN, "run", "--queen", queen.url, "--constraint", "pool=rs", "--shards", "3", "--max-parallel", "1", "--", "sh", "-c", "sleep 2"],
			{
				stdio: ["ignore", "pipe", "pipe"],
			},
		);
		let err = "";
		r.stderr.on("data", (d) => (err += d));
		const id = await until(() => runIdOf(err) || null, 15_000, "started");
		r.kill("SIGKILL");
		await until(async () => (await runView(id)).shards[0]!.attempts[0]?.startedAt, 15_000, "shard 1 running");
		await queen.stop();
		queen = await startQueen({ db, evictAfter: "3s", staleAfter: "1s", port: queen.port });
		const done = await until(
			async () => {
				const v = await runView(id).catch(() => null);
				return v && v.state !== "running" ? v : null;
			},
			40_000,
			"the run finished",
		);
		expect(done.state).toBe("passed");
		// Shards 2 and 3 were placed by the new queen, once each. Shard 1 ran through the restart; if its hive took
		// longer than --evict-after (3 s here) to reach the new queen, it was lost and ran again: at most once more.
		expect(done.shards.map((s) => s.attempts.length).slice(1)).toEqual([1, 1]);
		expect(done.shards[0]!.attempts.length).toBeLessThanOrEqual(2);
		if (done.shards[0]!.attempts.length === 2) expect(done.shards[0]!.attempts[0]!.result).toBe("lost");
	});

	it("a hive killed -9 mid-run: its shard is lost, runs again on the other hive once, and the run passes", async () => {
		const c = spawn(
			process.execPath,
			[QUEEN_BIN, "run", "--queen", queen.url, "--constraint", "pool=rs", "--shards", "1", "--", "sh", "-c", "sleep 4; echo done"],
			{
				stdio: ["ignore", "pipe", "pipe"],
			},
		);
		let out = "";
		let err = "";
		c.stdout.on("data", (d) => (out += d));
		c.stderr.on("data", (d) => (err += d));
		const exited = new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
		const id = await until(() => runIdOf(err) || null, 15_000, "started");
		const first = await until(async () => (await runView(id)).shards[0]!.attempts[0]?.hiveId ?? null, 15_000, "placed");
		const other = first === "rs-a" ? "rs-b" : "rs-a";
		await hives.get(first)!.stop("SIGKILL");
		expect(await exited, err).toBe(0);
		expect(out).toContain("[1/1] done\n");
		const v = await runView(id);
		expect(v.shards[0]!.state).toBe("passed");
		expect(v.shards[0]!.attempts.map((a) => [a.result, a.hiveId])).toEqual([
			["lost", first],
			["passed", other],
		]);
		expect(err).toMatch(/1\/1\s+rs-[ab]\s+passed\s+2\s+/);
		hives.set(
			first,
			await startHive({
				queen: queen.url,
				name: first,
				stateDir: join(dir, first),
				cgroupRoot: roots[first === "rs-a" ? 0 : 1]!,
				nvidiaSmi: FAKE_SMI("a100x8-idle"),
				extra: ["--label", "pool=rs"],
			}),
		);
	});
});
