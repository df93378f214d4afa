import { join } from "node:path";
import type { RecommendationsAnswer, RunUsage, WorkerInfo } from "@apiary/protocol";
import { exitedWorker, FakeHive } from "@apiary/test-support/fake-hive";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Right-sizing end to end: exit records carry what each run used, the queen
// keeps every run (durably) by profile and suite, and recommends limits.
const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe("right-sizing", () => {
	const dir = tempDir("advise");
	const db = join(dir, "queen.db");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db, evictAfter: "90s", extra: ["--advise-labels", "suite,shard"] });
		hive = await startHive({ queen: queen.url, name: "advise-h", stateDir: join(dir, "hive"), cgroupRoot: root });
	});
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});
	const recs = async (q = "") => (await json<RecommendationsAnswer>(`${queen.url}/v1/recommendations${q}`)).body;

	it("real runs on a real hive reach the queen's history with what they used; under 20 runs it recommends nothing and says so", async () => {
		// Each holds 40 MiB of anon memory for ~1.2 s under a 256 MiB, half-core limit.
		const script = "const a = Buffer.alloc(40 << 20, 1); setTimeout(() => process.exit(0), 1200)";
		for (let i = 0; i < 3; i++) {
			const body = {
				id: `smoke-${i}`,
				command: ["node", "-e", script],
				profile: "fast_feedback",
				memoryBytes: 256 * MiB,
				labels: { suite: "smoke", shard: "1" },
			};
			const r = await json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
			expect(r.status).toBe(201);
		}
		await until(async () => (await recs("?profile=fast_feedback")).groups[0]?.runs === 3, 30_000, "3 runs recorded");
		const a = await recs("?profile=fast_feedback");
		expect(a.keyLabels).toEqual(["shard", "suite"]);
		expect(a.groups).toHaveLength(1);
		const g = a.groups[0]!;
		expect(g).toMatchObject({ profile: "fast_feedback", labels: { suite: "smoke", shard: "1" }, runs: 3 });
		const mem = g.recommendations.find((r) => r.resource === "memory")!;
		expect(mem.recommended).toBeNull();
		expect(mem.reason).toBe("only 3 runs measured; 20 are needed to recommend");
		expect(mem.current).toBe(256 * MiB);
		// Each run's peak working set: the 40 MiB it held, under its limit.
		expect(mem.values).toHaveLength(3);
		for (const v of mem.values) {
			expect(v).toBeGreaterThanOrEqual(40 * MiB);
			expect(v).toBeLessThan(256 * MiB);
		}
		const cpu = g.recommendations.find((r) => r.resource === "cpu")!;
		expect(cpu.current).toBe(0.5); // fast_feedback's half core
		for (const v of cpu.values) expect(v).toBeGreaterThan(0);
		// The exit record itself, as the queen keeps it, has the usage.
		const w = (await json(`${queen.url}/v1/workers/smoke-0`)).body;
		const u = w.exit.usage as RunUsage;
		expect(u.memory.peakWorkingSetBytes!).toBeGreaterThanOrEqual(40 * MiB);
		expect(u.memory.limitBytes).toBe(256 * MiB);
		expect(u.cpu.seconds!).toBeGreaterThan(0);
		const out = await runCli("queen", ["advise", "--queen", queen.url, "--label", "suite=smoke"]);
		expect(out.code).toBe(0);
		expect(out.stdout).toContain("profile fast_feedback  shard=1  suite=smoke  —  3 runs");
		expect(out.stdout).toMatch(/memory\s+256M\s+→\s+none yet/);
		expect(out.stdout).toContain("memory: only 3 runs measured; 20 are needed to recommend");
	});

	it("with 40 runs of a suite it recommends: memory from the peaks with margin, an OOM raising it, a backtest and confidence — and keeps it across a queen restart", async () => {
		const fh = new FakeHive(queen.url, "advise-fake");
		await fh.opened();
		fh.hello();
		const base = Date.now() - 3_600_000;
		const runs: WorkerInfo[] = [];
		for (let i = 0; i < 40; i++) {
			runs.push(
				exitedWorker(`api-${i}`, {
					startedAt: base + i * 60_000,
					durationMs: 50_000,
					peakBytes: i === 39 ? 2 * GiB : (400 + (i % 10) * 10) * MiB,
					cores: 0.5,
					oom: i === 39,
					profile: "core_integration",
					labels: { suite: "api", shard: "2" },
					limits: { cpu: 2, memoryBytes: 2 * GiB, pids: null, timeoutMs: 600_000 },
				}),
			);
		}
		let seq = 0;
		for (const w of runs) fh.send({ type: "event", seq: ++seq, event: "worker.exited", worker: w });
		await until(async () => (await recs("?label=suite=api")).groups[0]?.runs === 40, 10_000, "40 runs recorded");
		const g = (await recs("?label=suite=api")).groups[0]!;
		const mem = g.recommendations.find((r) => r.resource === "memory")!;
		// The OOM under 2 GiB an hour ago is a raised lower bound (×1.2) and holds the limit for 24 h.
		expect(mem.recommended!).toBeGreaterThanOrEqual(2.4 * GiB);
		expect(mem.oomRate).toBeCloseTo(1 / 40, 10);
		expect(mem.backtest).toMatchObject({ runs: 40, oomKilled: 0 });
		expect(mem.reason).toMatch(/highest peak working set of a run in the last 14 days: 2.4G \(raised from an OOM kill\)/);
		const cpu = g.recommendations.find((r) => r.resource === "cpu")!;
		expect(cpu.recommended).toBe(0.6); // p90 0.5 × 1.15 = 0.575 → 0.6
		expect(cpu.confidence).toBeCloseTo(1 - 0.9 ** 40, 10);
		expect(cpu.backtest).toMatchObject({ runs: 40, throttled: 0, freedPerRun: 1.4 });
		const timeout = g.recommendations.find((r) => r.resource === "timeout")!;
		expect(timeout.recommended).toBe(80_000); // 50 s × 1.5 = 75 s → 80 s
		expect(timeout.current).toBe(600_000);
		const out = await runCli("queen", ["advise", "--queen", queen.url, "--profile", "core_integration"]);
		expect(out.code).toBe(0);
		const line = (name: string) => out.stdout.split("\n").find((l) => l.trimStart().startsWith(name))!;
		expect(line("cpu")).toMatch(/^\s+cpu\s+2 cores\s+→\s+0\.6 cores\s+98\.5%\s+throttled 0\.0%\s+0 of 40 throttled; frees 1\.4 cores per worker$/);
		expect(line("timeout")).toMatch(/timeout\s+10m0s\s+→\s+1m20s\s+.*timed out 0\.0%\s+0 of 40 timed out; frees 8m40s per worker$/);
		expect(line("memory")).toMatch(/memory\s+2\.0G\s+→\s+2\.4G\s+.*OOM 2\.5%\s+0 of 40 OOM-killed$/);
		fh.close();
		// Durable: a restarted queen on the same file recommends the same from the same runs.
		await queen.stop();
		queen = await startQueen({ db, port: Number(new URL(queen.url).port), evictAfter: "90s", extra: ["--advise-labels", "suite,shard"] });
		const again = (await recs("?label=suite=api")).groups[0]!;
		expect(again.runs).toBe(40);
		expect(again.recommendations.find((r) => r.resource === "cpu")!.recommended).toBe(0.6);
	});

	it("bad input is a 400 naming the field, and the CLI exits 2", async () => {
		const r = await json(`${queen.url}/v1/recommendations?label=nolabel`);
		expect(r.status).toBe(400);
		expect(r.body.message).toMatch(/label/);
		expect((await json(`${queen.url}/v1/recommendations?sort=x`)).status).toBe(400);
		const cli = await runCli("queen", ["advise", "--queen", queen.url, "--label", "nolabel"]);
		expect(cli.code).toBe(2);
		expect(cli.stderr).toMatch(/--label "nolabel" is not k=v/);
		const start = await runCli("queen", ["start", "--advise-labels", "suite,../x"]);
		expect(start.code).toBe(2);
		expect(start.stderr).toMatch(/--advise-labels/);
	});
});
