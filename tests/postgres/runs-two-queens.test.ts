import { spawn } from "node:child_process";
import { join } from "node:path";
import type { RunView } from "@apiary/protocol";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Sharded runs on PostgreSQL across two queens (issue #20): a run is carried
// on by the queen that started it; any other answers for it (GET, a cancel
// forwarded, the same key attached to), and takes it over when that queen is
// gone, its waiting shards included. Real queens, hives, shards and server.
const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;

describe("sharded runs on two queens sharing one PostgreSQL", () => {
	let server: Postgres;
	const dir = tempDir("runs-pg");
	const roots = [newCgroupRoot(), newCgroupRoot()];
	const queens: Daemon[] = [];
	const hives: Daemon[] = [];
	const runView = async (q: Daemon, id: string) => (await json<RunView>(`${q.url}/v1/runs/${id}`)).body;
	const runIdOf = (stderr: string) => /run (r-[0-9a-f]{8})/.exec(stderr)?.[1] ?? "";
	const shardArgs = (q: Daemon, more: string[], command: string) => ["run", "--queen", q.url, "--constraint", "pool=rpg", ...more, "--", "sh", "-c", command];

	beforeAll(async () => {
		server = await startPostgres();
		for (let i = 0; i < 2; i++) queens.push(await startQueen({ db: server.url, sqlite: true, staleAfter: "3s", evictAfter: "60s" }));
		// Each hive on another queen first, the other one next: a queen's shards go to both queens' hives.
		for (let i = 0; i < 2; i++)
			hives.push(
				await startHive({
					queen: [queens[i]!.url, queens[1 - i]!.url].join(","),
					name: `rpg${i}`,
					stateDir: join(dir, `h${i}`),
					cgroupRoot: roots[i]!,
					interval: "500ms",
					nvidiaSmi: FAKE_SMI("a100x8-idle"),
					extra: ["--label", "pool=rpg"],
				}),
			);
		for (const q of queens) await until(async () => (await json(`${q.url}/v1/gpus?free=true`)).body.length === 16, 30_000, "both hives' GPUs on every queen");
	}, 120_000);
	afterAll(async () => {
		for (const h of hives) await h.stop();
		for (const q of queens) await q.stop();
		for (const r of roots) await removeCgroupRoot(r);
		await server?.stop();
		removeDir(dir);
	});

	it("the same key sent to both queens at once starts one run; the other queen answers for it and forwards its cancel", async () => {
		const body = { command: ["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"], shards: 2, constraints: { pool: "rpg" }, idempotencyKey: "both-at-once" };
		const post = (q: Daemon) =>
			json<RunView>(`${q.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		const [a, b] = await Promise.all([post(queens[0]!), post(queens[1]!)]);
		expect([a.status, b.status].sort()).toEqual([200, 201]);
		expect(a.body.id).toBe(b.body.id);
		const id = a.body.id;
		const owner = a.status === 201 ? queens[0]! : queens[1]!;
		const other = owner === queens[0] ? queens[1]! : queens[0]!;
		await until(async () => (await runView(other, id)).shards.every((s) => s.attempts[0]?.startedAt), 15_000, "both shards running, seen by the other queen");
		// The cancel goes to the queen that does not carry the run on: forwarded, both shards stopped gracefully.
		const del = await json<RunView>(`${other.url}/v1/runs/${id}`, { method: "DELETE" });
		expect(del.status).toBe(200);
		const done = await until(
			async () => {
				const v = await runView(other, id);
				return v.state !== "running" ? v : null;
			},
			20_000,
			"cancelled",
		);
		expect(done.state).toBe("cancelled");
		expect(done.shards.map((s) => s.state)).toEqual(["cancelled", "cancelled"]);
		for (const s of done.shards) expect((await json(`${other.url}/v1/workers/${s.attempts[0]!.workerId}`)).body.state).toBe("exited");
		// Both queens are still up (a key taken twice at once did not fail either's commits).
		for (const q of queens) expect((await json(`${q.url}/healthz`)).status).toBe(200);
	});

	it("its queen taken for gone while it lives (its renewals held back, as when cut off from the database): the other takes the run over and it lets go, so the run ends once", async () => {
		const post = await json<RunView>(`${queens[0]!.url}/v1/runs`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ command: ["sleep", "12"], shards: 2, constraints: { pool: "rpg" } }),
		});
		expect(post.status).toBe(201);
		const id = post.body.id;
		await until(async () => (await runView(queens[1]!, id)).shards.every((s) => s.attempts[0]?.startedAt), 15_000, "both shards running");
		const c = new pg.Client({ connectionString: server.url });
		await c.connect();
		const ownerOf = async () => (await c.query<{ owner: string }>("SELECT owner FROM shard_runs WHERE id = $1", [id])).rows[0]!.owner;
		try {
			const first = await ownerOf();
			// The first queen's renewals of its row are dropped: to the other it looks gone, though it runs on.
			await c.query(
				`CREATE FUNCTION hold_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = '${first}' THEN RETURN NULL; END IF; RETURN NEW; END $$`,
			);
			await c.query("CREATE TRIGGER hold_back BEFORE UPDATE ON queens FOR EACH ROW EXECUTE FUNCTION hold_back()");
			try {
				await until(async () => (await ownerOf()) !== first, 15_000, "taken over by the other queen");
			} finally {
				await c.query("DROP TRIGGER hold_back ON queens; DROP FUNCTION hold_back()");
			}
			await until(() => /taken over by another queen/.test(queens[0]!.out() + queens[0]!.err()), 10_000, "the first queen lets it go");
			await until(async () => (await runView(queens[0]!, id)).state === "passed", 30_000, "passed, as either queen says");
			expect((await runView(queens[1]!, id)).shards.map((s) => [s.state, s.attempts.length])).toEqual([
				["passed", 1],
				["passed", 1],
			]);
			// Written by one queen only: one run.finished, each shard ended once.
			const n = async (sql: string) => (await c.query<{ n: number }>(sql, [id])).rows[0]!.n;
			expect(await n("SELECT count(*)::int AS n FROM events WHERE type = 'run.finished' AND data->>'runId' = $1")).toBe(1);
			expect(await n("SELECT count(*)::int AS n FROM events WHERE type = 'run.shard' AND data->>'event' = 'ended' AND data->>'runId' = $1")).toBe(2);
		} finally {
			await c.end();
		}
	}, 90_000);

	it("its queen killed -9 mid-run: the other queen carries the run on (running shards followed, waiting ones placed), and --key attaches there", async () => {
		const args = (q: Daemon) =>
			shardArgs(q, ["--shards", "4", "--max-parallel", "2", "--key", "takeover"], 'sleep 3; echo "shard $APIARY_SHARD on $APIARY_HIVE_ID"');
		const first = spawn(process.execPath, [QUEEN_BIN, ...args(queens[0]!)], { stdio: ["ignore", "pipe", "pipe"] });
		let err1 = "";
		first.stderr.on("data", (d) => (err1 += d));
		const id = await until(() => runIdOf(err1) || null, 15_000, "the run started");
		await until(async () => (await runView(queens[1]!, id)).shards.filter((s) => s.attempts[0]?.startedAt).length === 2, 15_000, "two shards running");
		first.kill("SIGKILL");
		queens[0]!.proc.kill("SIGKILL");
		await queens[0]!.stop();
		const second = await runCli("queen", args(queens[1]!));
		if (second.code !== 0) console.log(second.stderr, queens[1]!.err().slice(-4000));
		expect(second.code, second.stderr).toBe(0);
		expect(runIdOf(second.stderr)).toBe(id);
		for (let i = 1; i <= 4; i++) expect(second.stdout).toMatch(new RegExp(`^\\[${i}/4\\] shard ${i}/4 on rpg[01]$`, "m"));
		const v = await runView(queens[1]!, id);
		expect(v.state).toBe("passed");
		// Every shard once: the two running through the takeover were followed, not lost and run again.
		expect(v.shards.map((s) => [s.state, s.attempts.length])).toEqual(Array.from({ length: 4 }, () => ["passed", 1]));
		// The row now belongs to the live queen, and the other queen's writes were the last of it.
		const c = new pg.Client({ connectionString: server.url });
		await c.connect();
		try {
			const { rows } = await c.query(
				"SELECT r.owner, r.state, q.id IS NOT NULL AS live FROM shard_runs r LEFT JOIN queens q ON q.id = r.owner WHERE r.id = $1",
				[id],
			);
			expect(rows).toEqual([{ owner: expect.any(String), state: "passed", live: true }]);
			const started = await c.query("SELECT count(*)::int AS n FROM events WHERE type = 'run.finished' AND data->>'runId' = $1", [id]);
			expect(started.rows[0].n).toBe(1);
		} finally {
			await c.end();
		}
	}, 90_000);
});
