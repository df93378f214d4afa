import { existsSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { startHiveDaemon, type HiveDaemon } from "../../src/daemon.ts";
import { cleanup, fakeSmi, testRoot, until } from "../helpers.ts";

// A real daemon listening on loopback, driven over HTTP.
describe("the hive's local HTTP API", () => {
	let d: HiveDaemon | null = null;
	let stateDir = "";
	const boot = async (token: string | null = null) => {
		const root = testRoot("v1");
		stateDir = root.stateDir;
		d = await startHiveDaemon({
			listen: "127.0.0.1:0",
			name: "api-hive",
			intervalMs: 200,
			cgroupDriver: "v1",
			cgroupRoot: root.rootName,
			stateDir,
			nvidiaSmi: fakeSmi("a100x4"),
			token,
		});
		return d;
	};
	const req = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
		const res = await fetch(`${d!.url}${path}`, {
			method,
			headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
			body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
		});
		const text = await res.text();
		let json: any = null;
		try {
			json = JSON.parse(text);
		} catch {}
		return { status: res.status, json, text };
	};
	afterEach(async () => {
		if (d) {
			await d.app.close();
			d.gpu.stop();
			await cleanup(d.hive, stateDir);
		}
		d = null;
	});

	it("spawns, lists, shows, streams logs, kills", async () => {
		await boot();
		const health = await req("GET", "/healthz");
		expect(health.json).toMatchObject({ ok: true, hiveId: "api-hive", driver: { name: "v1", enforced: true } });
		expect(health.json.host.cores).toBeGreaterThan(0);
		const created = await req("POST", "/v1/workers", {
			id: "api-1",
			command: ["sh", "-c", "echo out; echo err >&2; sleep 60"],
			profile: "fast_feedback",
			memoryBytes: 256 << 20,
			labels: { suite: "api" },
		});
		expect(created.status).toBe(201);
		expect(created.json).toMatchObject({ id: "api-1", state: "running", limits: { memoryBytes: 256 << 20, cpu: 0.5, timeoutMs: 120_000 } });
		expect((await req("GET", "/v1/workers?label=suite=api")).json.map((w: { id: string }) => w.id)).toEqual(["api-1"]);
		expect((await req("GET", "/v1/workers?label=suite=other")).json).toEqual([]);
		const one = await until(
			async () => {
				const r = await req("GET", "/v1/workers/api-1");
				return r.json.stats?.cpu.percent != null ? r : null;
			},
			5000,
			"sampled stats",
		);
		expect(one.json.stats.memory.limitBytes).toBe(256 << 20);
		const snap = await req("GET", "/v1/snapshot");
		expect(snap.json).toMatchObject({ hiveId: "api-hive", driver: { name: "v1" } });
		expect(snap.json.workers.map((w: { id: string }) => w.id)).toContain("api-1");
		await until(async () => (await req("GET", "/v1/workers/api-1/logs")).text.includes("err"), 5000, "logs");
		const logs = await req("GET", "/v1/workers/api-1/logs");
		expect(logs.text).toBe("out\nerr\n");
		const killed = await req("DELETE", "/v1/workers/api-1");
		expect(killed.status).toBe(200);
		// The stop contract: SIGTERM first; `sleep` obeys it within the grace period.
		expect(killed.json.exit).toMatchObject({ reason: "killed", signal: "SIGTERM", graceful: true });
		expect((await req("GET", "/v1/workers?state=running")).json).toEqual([]);
		expect((await req("GET", "/v1/workers?state=exited")).json).toHaveLength(1);
	});

	it("follows a log until the worker exits", async () => {
		await boot();
		await req("POST", "/v1/workers", { id: "talker", command: ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done"] });
		const follow = await req("GET", "/v1/workers/talker/logs?follow=true");
		expect(follow.text).toBe("line 1\nline 2\nline 3\n");
		expect(d!.hive.get("talker")!.exit).toMatchObject({ exitCode: 0, reason: "exited" });
	});

	it("serves the GPU inventory in the snapshot and passes GPUs to workers", async () => {
		await boot();
		const snap = await until(
			async () => {
				const s = await req("GET", "/v1/snapshot");
				return s.json.gpu.gpus.length === 4 ? s : null;
			},
			10_000,
			"GPUs",
		);
		expect(snap.json.gpu.state).toBe("ok");
		expect((await req("POST", "/v1/workers", { command: ["true"], gpus: ["9"] })).json.message).toMatch(/gpus: "9"/);
	});

	it("rejects bad input with a 4xx naming the field, and changes nothing", async () => {
		await boot();
		const cases: [unknown, RegExp][] = [
			["{not json", /JSON/i],
			[{ command: "rm -rf /" }, /body\.command must be array/],
			[{ command: [] }, /body\.command must NOT have fewer than 1 items/],
			[{ command: ["true"], cpu: "lots" }, /body\.cpu must be number/],
			[{ command: ["true"], memoryBytes: 12.5 }, /body\.memoryBytes must be integer/],
			[{ command: ["true"], bogus: 1 }, /body: unknown field "bogus"/],
			[{ cpu: 1 }, /missing field "command"/],
			[{ id: "../x", command: ["true"] }, /body\.id must match pattern/],
			[{ id: "a/b", command: ["true"] }, /body\.id must match pattern/],
			[{ command: ["true"], profile: "huge" }, /body\.profile must be equal to one of the allowed values/],
			[{ command: ["true"], labels: { "bad key!": "x" } }, /body\.labels/],
			[{ command: ["no-such-command-xyz"] }, /command: "no-such-command-xyz" is not an executable/],
		];
		for (const [body, msg] of cases) {
			const r = await req("POST", "/v1/workers", body);
			expect(r.status, JSON.stringify(body)).toBe(400);
			expect(r.json.message, JSON.stringify(body)).toMatch(msg);
		}
		const big = await req("POST", "/v1/workers", { command: ["echo", "x".repeat(2 << 20)] });
		expect(big.status).toBe(413);
		expect((await req("GET", "/v1/workers/..%2Fx")).status).toBe(400);
		expect((await req("GET", "/v1/workers?state=zombie")).json.message).toMatch(/querystring\.state/);
		expect((await req("GET", "/v1/workers/nobody")).json).toMatchObject({ statusCode: 404, error: "Not Found", message: "no worker nobody" });
		expect((await req("DELETE", "/v1/workers/nobody")).status).toBe(404);
		// nothing was created: no worker, no cgroup, no log file
		expect(d!.hive.list()).toEqual([]);
		expect(d!.hive.driver.list()).toEqual([]);
		expect(existsSync(`${stateDir}/logs/..`)).toBe(true);
		const dup = await req("POST", "/v1/workers", { id: "dup", command: ["sleep", "30"] });
		expect(dup.status).toBe(201);
		expect((await req("POST", "/v1/workers", { id: "dup", command: ["sleep", "30"] })).json).toMatchObject({ statusCode: 409, error: "Conflict" });
	});

	it("with a token, every route but /healthz needs it, reads included", async () => {
		await boot("s3cret-token");
		expect((await req("POST", "/v1/workers", { command: ["true"] })).status).toBe(401);
		expect((await req("POST", "/v1/workers", { command: ["true"] }, { authorization: "Bearer wrong" })).status).toBe(401);
		expect(d!.hive.list()).toEqual([]);
		const ok = await req("POST", "/v1/workers", { id: "authed", command: ["sleep", "30"] }, { authorization: "Bearer s3cret-token" });
		expect(ok.status).toBe(201);
		expect((await req("GET", "/v1/workers")).status).toBe(401);
		expect((await req("GET", "/v1/snapshot")).status).toBe(401);
		expect((await req("GET", "/v1/workers/authed/logs")).status).toBe(401);
		expect((await req("GET", "/v1/workers", undefined, { authorization: "Bearer s3cret-token" })).status).toBe(200);
		expect((await req("GET", "/healthz")).status).toBe(200);
		expect((await req("DELETE", "/v1/workers/authed")).status).toBe(401);
	});

	it("describes itself in OpenAPI, generated from the route schemas", async () => {
		await boot();
		const doc = (await req("GET", "/openapi.json")).json;
		expect(doc.openapi).toBe("3.0.3");
		expect(Object.keys(doc.paths)).toEqual(
			expect.arrayContaining(["/v1/workers", "/v1/workers/{id}", "/v1/workers/{id}/logs", "/v1/snapshot", "/healthz", "/metrics"]),
		);
		const body = doc.paths["/v1/workers"].post.requestBody.content["application/json"].schema;
		expect(body.required).toEqual(["command"]);
		expect(body.properties.id.pattern).toBe("^[a-z0-9][a-z0-9._-]{0,62}$");
		// Answers are documented from the same declarations.
		const one = doc.paths["/v1/workers/{id}"].get.responses["200"].content["application/json"].schema;
		expect(one.required).toEqual(expect.arrayContaining(["id", "command", "limits", "pid", "state", "stats", "exit"]));
		expect(doc.paths["/v1/workers/{id}"].get.responses["404"]).toBeDefined();
		expect(doc.paths["/v1/workers"].post.responses["201"].content["application/json"].schema.properties.exit).toBeDefined();
		expect(doc.paths["/v1/snapshot"].get.responses["200"].content["application/json"].schema.properties.gpu).toBeDefined();
		const ui = await fetch(`${d!.url}/docs/`);
		expect(ui.status).toBe(200);
		expect(await ui.text()).toMatch(/swagger-ui/i);
	});

	it("refuses to listen beyond loopback without a token", async () => {
		await expect(
			startHiveDaemon({ listen: "0.0.0.0:0", name: "x", intervalMs: 1000, cgroupDriver: "none", stateDir: "/nonexistent", nvidiaSmi: "x", token: null }),
		).rejects.toThrow(/refusing to listen on 0\.0\.0\.0 without a token/);
	});
});
