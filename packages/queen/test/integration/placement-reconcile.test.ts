import { join } from "node:path";
import type { PlacementAnswer, RunView } from "@apiary/protocol";
import { endedWorker, FakeHive, worker } from "@apiary/test-support/fake-hive";
import { removeDir, tempDir } from "@apiary/test-support/procs";
import { queenDb } from "@apiary/test-support/queen-db";
import { until } from "@apiary/test-support/util";
import { afterEach, describe, expect, it } from "vitest";
import { type QueenDaemon, startQueenDaemon } from "../../src/daemon.ts";

// The queen's side of a spawn whose answer is lost with its hive, with a
// simulated hive that does exactly what the test says: the retry finds the
// worker the hive did start, and never asks for a second one.
describe("placement reconciles a spawn whose answer was lost", () => {
	let q: QueenDaemon | null = null;
	let dir = "";
	const hives: FakeHive[] = [];
	afterEach(async () => {
		for (const h of hives.splice(0)) h.close();
		await q?.close();
		q = null;
		removeDir(dir);
	});
	const connect = async (id: string) => {
		const h = new FakeHive(q!.url, id);
		hives.push(h);
		await h.opened();
		h.hello();
		h.heartbeat([]);
		return h;
	};
	const post = async (body: object) => {
		const res = await fetch(`${q!.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		return { status: res.status, body: (await res.json()) as PlacementAnswer & { message: string } };
	};

	it("the hive started it and went away before answering: 503, then the retry returns that worker, and no second spawn is asked for", async () => {
		dir = tempDir("reconcile");
		q = await startQueenDaemon({ listen: "127.0.0.1:0", db: await queenDb(join(dir, "q.db")), staleAfterMs: 3000, evictAfterMs: 90_000, token: null });
		const h = await connect("fh");
		const body = { command: ["sleep", "60"], hive: "fh", idempotencyKey: "k-1" };
		const first = post(body);
		await until(() => h.commands.length === 1, 5000, "the spawn command");
		const cmd = h.commands[0]!;
		expect(cmd).toMatchObject({ type: "command", op: "spawn", body: { command: ["sleep", "60"] } });
		const id = (cmd as { body: { id: string } }).body.id;
		// It started the worker (its snapshot says so), then vanished without replying.
		h.heartbeat([worker(id, { command: ["sleep", "60"], startedAt: new Date().toISOString() })]);
		await until(async () => ((await (await fetch(`${q!.url}/v1/workers/${id}`)).json()) as { state: string }).state === "running", 5000, "the worker known");
		h.close();
		const r1 = await first;
		expect(r1.status).toBe(503);
		expect(r1.body.message).toMatch(new RegExp(`worker ${id} may have started`));
		const r2 = await post(body);
		expect(r2.status).toBe(201);
		expect(r2.body).toMatchObject({ id, hiveId: "fh" });
		expect(h.commands).toHaveLength(1);
	});

	it("a run's shard whose id the hive already has (a queen before placed it, unrecorded): the run follows that worker to its end instead of failing", async () => {
		dir = tempDir("reconcile");
		q = await startQueenDaemon({ listen: "127.0.0.1:0", db: await queenDb(join(dir, "q.db")), staleAfterMs: 3000, evictAfterMs: 90_000, token: null });
		const h = await connect("fh");
		const res = await fetch(`${q.url}/v1/runs`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ command: ["true"], shards: 1, hive: "fh" }),
		});
		expect(res.status).toBe(201);
		const run = (await res.json()) as RunView;
		await until(() => h.commands.length === 1, 5000, "the spawn command");
		const cmd = h.commands[0] as { id: string; body: { id: string } };
		const id = cmd.body.id;
		// The hive's one refusal of a spawn: that id is a worker's already.
		h.send({ type: "reply", id: cmd.id, status: 409, error: `id ${id} is already in use on this hive` });
		const view = async () => (await (await fetch(`${q!.url}/v1/runs/${run.id}`)).json()) as RunView;
		await until(async () => (await view()).shards[0]!.attempts[0]?.hiveId === "fh", 5000, "the shard follows the worker there");
		expect((await view()).state).toBe("running");
		// That worker's end, as the hive reports it: the run passes on it, with no second spawn.
		const started = new Date().toISOString();
		h.heartbeat([worker(id, { command: ["true"], startedAt: started })]);
		h.heartbeat([endedWorker(id, 10, [])]);
		await until(async () => (await view()).state !== "running", 5000, "the run ends");
		const v = await view();
		expect(v.state).toBe("passed");
		expect(v.shards[0]!.attempts).toHaveLength(1);
		expect(h.commands).toHaveLength(1);
	});
});
