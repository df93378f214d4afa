import { writeFileSync } from "node:fs";
import { createServer, type Server, connect } from "node:net";
import { get } from "node:http";
import { join } from "node:path";
import type { HiveView, WorkerInfo } from "@apiary/protocol";
import { FakeHive, worker } from "@apiary/test-support/fake-hive";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Any queen answers for any hive: three queens on one database behind a
// round-robin TCP proxy (the load balancer docs/operations.md recommends),
// three real hives each connected to one queen. Before, only the hive's own
// queen could place on it, stop its workers or read their logs: through the
// balancer two placements in three failed, and a logs request crashed a queen.

/** A round-robin TCP proxy: each connection goes to the next queen. */
function roundRobin(ports: number[]): Promise<{ server: Server; url: string; served: number[] }> {
	let next = 0;
	const served = ports.map(() => 0);
	const server = createServer((client) => {
		const i = next++ % ports.length;
		served[i]!++;
		const upstream = connect(ports[i]!, "127.0.0.1");
		client.pipe(upstream).pipe(client);
		const end = () => {
			client.destroy();
			upstream.destroy();
		};
		client.on("error", end);
		upstream.on("error", end);
		client.on("close", end);
		upstream.on("close", end);
	});
	return new Promise((resolve) =>
		server.listen(0, "127.0.0.1", () => {
			const a = server.address();
			resolve({ server, url: `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`, served });
		}),
	);
}

describe("any queen answers for any hive (three queens, one database, a round-robin balancer)", () => {
	const dir = tempDir("any-queen");
	const roots = [newCgroupRoot(), newCgroupRoot(), newCgroupRoot()];
	const queens: Daemon[] = [];
	const hives: Daemon[] = [];
	let lb: Awaited<ReturnType<typeof roundRobin>>;
	beforeAll(async () => {
		// One path: in the postgres tier, one database for the three.
		for (let i = 0; i < 3; i++) queens.push(await startQueen({ db: join(dir, "fleet.db"), staleAfter: "2s", evictAfter: "60s" }));
		for (let i = 0; i < 3; i++)
			hives.push(await startHive({ queen: queens[i]!.url, name: `aq${i}`, stateDir: join(dir, `hive${i}`), cgroupRoot: roots[i]!, interval: "500ms" }));
		lb = await roundRobin(queens.map((q) => q.port));
		for (const q of queens)
			await until(
				async () => (await json<HiveView[]>(`${q.url}/v1/hives`)).body.filter((h) => h.id.startsWith("aq") && h.state === "ready").length === 3,
				20_000,
				"every queen sees three hives ready",
			);
	}, 120_000);
	afterAll(async () => {
		lb?.server.close();
		for (const h of hives) await h.stop();
		for (const q of queens) await q.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	const env = () => ({ APIARY_QUEEN: lb.url });

	it("queen run through the balancer places on every hive and streams its output, every time", async () => {
		for (let i = 0; i < 9; i++) {
			// Each run is a new connection, to queen i % 3 (one per run, kept alive): hive i+1 is another queen's.
			const hive = `aq${(i + 1) % 3}`;
			const r = await runCli("queen", ["run", "--hive", hive, "--", "sh", "-c", `echo run-${i} on $APIARY_HIVE_ID; exit ${i % 2 ? 3 : 0}`], env());
			expect(r.stderr).not.toMatch(/could not place|not connected/);
			expect(r.stdout).toBe(`run-${i} on ${hive}\n`);
			expect(r.code).toBe(i % 2 ? 3 : 0);
		}
		// Every queen took connections: the relays were exercised, not one lucky queen.
		expect(lb.served.every((n) => n > 0)).toBe(true);
	});

	it("queen kill and queen logs -f through the balancer work for workers on every hive", async () => {
		for (let i = 0; i < 6; i++) {
			const hive = `aq${i % 3}`;
			const id = `lk-${i}`;
			const placed = await runCli("queen", ["run", "--detach", "--hive", hive, "--id", id, "--", "sh", "-c", "echo started; exec sleep 60"], env());
			expect(placed.code, placed.stderr).toBe(0);
			await until(async () => (await runCli("queen", ["logs", id], env())).stdout === "started\n", 15_000, `${id}'s output through the balancer`);
			// Followed through the balancer while it runs; the kill (through the balancer too) ends it.
			const following = runCli("queen", ["logs", "-f", id], env());
			const killed = await runCli("queen", ["kill", id], env());
			expect(killed.code, killed.stderr).toBe(0);
			const followed = await following;
			expect(followed.code, followed.stderr).toBe(0);
			expect(followed.stdout).toBe("started\n");
			await until(async () => (await json(`${queens[(i + 1) % 3]!.url}/v1/workers/${id}`)).body?.state === "exited", 15_000, `${id} exited`);
		}
	});

	it("a queen asked for a hive of another relays it: logs, stop and placement each answered by a queen the hive is not connected to", async () => {
		const [q0, q1] = queens;
		const placed = await json(`${q1!.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "relayed", hive: "aq0", command: ["sh", "-c", "echo relayed-out; exec sleep 60"] }),
		});
		expect(placed.status).toBe(201);
		expect(placed.body).toMatchObject({ hiveId: "aq0", id: "relayed" });
		await until(async () => (await (await fetch(`${q1!.url}/v1/workers/relayed/logs?hive=aq0`)).text()) === "relayed-out\n", 15_000, "logs through q1");
		const stopped = await json(`${queens[2]!.url}/v1/workers/relayed?hive=aq0`, { method: "DELETE" });
		expect(stopped.status).toBe(200);
		// The hive's own queen records it as stopped.
		await until(async () => (await json(`${q0!.url}/v1/workers/relayed`)).body?.state === "exited", 15_000, "exited");
	});

	it("a log several credit windows long comes whole through a queen the hive is not connected to, in order", async () => {
		// 24 MiB, each 1 MiB block filled with its own letter: the relaying queen reads the
		// hive's queen's response only as far as its reader's credit, the rest waits in TCP.
		const blocks = 24;
		const placed = await json(`${queens[1]!.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({
				id: "long-log",
				hive: "aq0",
				command: ["sh", "-c", `for i in $(seq 0 ${blocks - 1}); do head -c 1048576 /dev/zero | tr '\\0' "$(printf "\\\\$(printf %o $((97 + i)))")"; done`],
			}),
		});
		expect(placed.status).toBe(201);
		await until(async () => (await json(`${queens[0]!.url}/v1/workers/long-log`)).body?.state === "exited", 20_000, "written");
		// The reader waits a second before reading: the relaying queen's credit runs out meanwhile.
		const body = await new Promise<Buffer>((resolve, reject) =>
			get(`${queens[1]!.url}/v1/workers/long-log/logs?hive=aq0`, (res) => {
				const chunks: Buffer[] = [];
				setTimeout(() => res.on("data", (b: Buffer) => chunks.push(b)).on("end", () => resolve(Buffer.concat(chunks))), 1000);
			}).on("error", reject),
		);
		expect(body.length).toBe(blocks * 2 ** 20);
		for (let i = 0; i < blocks; i++) expect([body[i * 2 ** 20], body[(i + 1) * 2 ** 20 - 1]]).toEqual([97 + i, 97 + i]);
	});

	it("every queen says when each hive was last seen, its own and the others' (within a renewal)", async () => {
		for (const q of queens) {
			const hives = await until(
				async () => {
					const hs = (await json<HiveView[]>(`${q.url}/v1/hives`)).body.filter((h) => h.id.startsWith("aq"));
					return hs.every((h) => h.lastSeenAgoMs !== null) ? hs : null;
				},
				15_000,
				"last seen known",
			);
			for (const h of hives) expect(h.lastSeenAgoMs!).toBeLessThan(15_000);
			const table = await runCli("queen", ["hives", "--queen", q.url]);
			for (const line of table.stdout.split("\n").filter((l) => l.startsWith("aq"))) expect(line).toMatch(/^aq\d\s+ready\s+schedulable\s+\d+\.\ds ago/);
		}
		// And no queen overlapped queries on one client (pg's DeprecationWarning, printed once per process).
		for (const q of queens) expect(q.err()).not.toMatch(/DeprecationWarning/);
	});

	it("a cordon or drain asked of one queen is the same on every queen, and the hive's own queen stops its workers at the deadline", async () => {
		const [a, b, c] = queens;
		const post = (q: Daemon, path: string, body: object = {}) =>
			json(`${q.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		const everyQueen = (want: (h: HiveView) => boolean, what: string) =>
			Promise.all(queens.map((q) => until(async () => want((await json<HiveView>(`${q.url}/v1/hives/aq1`)).body), 3000, `${what} on ${q.url}`)));
		// aq1 is queen B's; a worker on it, placed through queen C.
		const w = await post(c!, "/v1/workers", { id: "aq-drain", hive: "aq1", command: ["sleep", "300"] });
		expect(w.status).toBe(201);
		expect((await post(a!, "/v1/hives/aq1/cordon", { reason: "firmware" })).status).toBe(200);
		await everyQueen((h) => h.drain?.state === "cordoned" && h.drain.reason === "firmware", "cordoned");
		const refused = await post(c!, "/v1/workers", { hive: "aq1", command: ["true"] });
		expect(refused.status).toBe(409);
		expect(refused.body.message).toMatch(/hive aq1 is cordoned \(firmware\)/);
		// Drained through queen C; queen B, whose socket it is, stops the worker at the deadline.
		expect((await post(c!, "/v1/hives/aq1/drain", { deadlineSeconds: 1, reason: "firmware" })).status).toBe(200);
		await everyQueen((h) => h.drain?.state === "drained", "drained");
		const ended = await json(`${a!.url}/v1/workers/aq-drain?hive=aq1`);
		expect(ended.body.exit.reason).toBe("drained");
		expect((await post(b!, "/v1/hives/aq1/uncordon")).status).toBe(200);
		await everyQueen((h) => h.drain === null, "uncordoned");
	});

	it("a claim made on one queen is released at once on another that has not read it yet (not a 404); an unknown one is still a 404", async () => {
		for (let i = 0; i < 3; i++) {
			const [a, b] = [queens[i % 3]!, queens[(i + 1) % 3]!];
			// B is paused before the claim is made: on resuming it has the DELETE in hand before it has read A's commit.
			b.proc.kill("SIGSTOP");
			let made: { status: number; body: { id: string } };
			let gone: Promise<{ status: number; body: { id?: string; message?: string } }>;
			try {
				made = await json<{ id: string }>(`${a.url}/v1/claims`, {
					method: "POST",
					headers: { "content-type": "application/json" },
					body: JSON.stringify({ holder: `aq-claim-${i}`, count: 1, ttlSeconds: 60 }),
				});
				gone = json(`${b.url}/v1/claims/${made.body.id}`, { method: "DELETE" });
				await new Promise((r) => setTimeout(r, 300));
			} finally {
				b.proc.kill("SIGCONT");
			}
			expect(made.status).toBe(201);
			const answer = await gone;
			expect(answer.status, JSON.stringify(answer.body)).toBe(200);
			expect(answer.body.id).toBe(made.body.id);
		}
		const unknown = await json<{ message: string }>(`${queens[0]!.url}/v1/claims/c-000000000000`, { method: "DELETE" });
		expect(unknown.status).toBe(404);
		expect(unknown.body.message).toMatch(/no claim c-000000000000/);
	});
});

describe("a relay whose queen dies mid-command", () => {
	const dir = tempDir("relay-dies");
	const queens: Daemon[] = [];
	const hives: FakeHive[] = [];
	beforeAll(async () => {
		for (let i = 0; i < 3; i++) queens.push(await startQueen({ db: join(dir, "fleet.db"), staleAfter: "2s", evictAfter: "60s" }));
	}, 60_000);
	afterAll(async () => {
		for (const h of hives) h.close();
		for (const q of queens) await q.stop();
		removeDir(dir);
	});

	it("fails cleanly (503, may have started), and a keyed retry on another queen gets the first answer once the hive has said", async () => {
		const [a, b, c] = queens;
		const connect = async (q: Daemon, instanceId: string, workers: WorkerInfo[]) => {
			const h = new FakeHive(q.url, "fh", { instanceId });
			hives.push(h);
			await h.opened();
			h.hello();
			h.heartbeat(workers);
			return h;
		};
		const first = await connect(b!, "fh-1", []);
		await until(async () => (await json(`${a!.url}/v1/hives/fh`)).body?.state === "ready", 15_000, "fh ready on queen A");
		const body = { command: ["sleep", "60"], hive: "fh", idempotencyKey: "relay-k1" };
		const post = (q: Daemon, b2: object = body) =>
			json(`${q.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(b2) });
		const answer = post(a!);
		// The spawn reaches the hive through queen B, which dies before the hive answers.
		const cmd = await until(() => first.commands.find((m) => m.op === "spawn"), 15_000, "the spawn at the hive");
		await b!.stop("SIGKILL");
		const r1 = await answer;
		expect(r1.status).toBe(503);
		expect(r1.body.message).toMatch(/may have started: retry with the same idempotencyKey/);
		const id = (cmd as { body: { id: string } }).body.id;
		// Until the hive says, a retry on any queen is told to wait, and nothing is placed twice.
		const early = await post(c!);
		expect(early.status).toBe(503);
		// The hive did start it, and reconnects to queen C with it running.
		first.close();
		await connect(c!, "fh-1", [worker(id)]);
		const r2 = await until(
			async () => {
				const r = await post(c!);
				return r.status === 503 ? null : r;
			},
			15_000,
			"the retry answered",
		);
		expect(r2.status).toBe(201);
		expect(r2.body).toMatchObject({ hiveId: "fh", id });
		// The same key with another body is still refused, on any queen.
		expect((await post(a!, { ...body, command: ["true"] })).status).toBe(422);
		expect(hives.flatMap((h) => h.commands.filter((m) => m.op === "spawn"))).toHaveLength(1);
	});
});

describe("tokens across queens", () => {
	const dir = tempDir("tokens-queens");
	const queens: Daemon[] = [];
	beforeAll(async () => {
		writeFileSync(join(dir, "admin.token"), "fleet-admin-token-0123456789\n");
		for (let i = 0; i < 2; i++) queens.push(await startQueen({ db: join(dir, "fleet.db"), tokenFile: join(dir, "admin.token") }));
	}, 60_000);
	afterAll(async () => {
		for (const q of queens) await q.stop();
		removeDir(dir);
	});

	it("a token made on one queen is honoured at once by another, and revoked there it stops on the first within 2 s", async () => {
		const [a, b] = queens;
		const admin = { authorization: "Bearer fleet-admin-token-0123456789" };
		const made = await json(`${a!.url}/v1/tokens`, {
			method: "POST",
			headers: { ...admin, "content-type": "application/json" },
			body: JSON.stringify({ role: "read", name: "viewer" }),
		});
		expect(made.status).toBe(201);
		const viewer = { authorization: `Bearer ${made.body.token}` };
		expect((await json(`${b!.url}/v1/hives`, { headers: viewer })).status).toBe(200);
		expect((await json(`${b!.url}/v1/tokens/${made.body.id}`, { method: "DELETE", headers: admin })).status).toBe(200);
		await until(async () => (await json(`${a!.url}/v1/hives`, { headers: viewer })).status === 401, 3000, "revoked on queen A too");
	});
});
