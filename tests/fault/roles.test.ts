import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allows, type Role, type TokenCreated } from "@apiary/protocol";
import { createServer } from "@apiary/kit/server";
import { type QueenDaemon, startQueenDaemon } from "../../packages/queen/src/daemon.ts";
import { FakeHive } from "@apiary/test-support/fake-hive";
import { type Daemon, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Credentials with roles (issue #27): one shared token was root on every
// host. Now every route declares a role beside its schema, each token has
// one, a hive's token speaks for its own hive alone, and revoking a token
// ends what was opened with it.

const ADMIN = "admin-file-token-0123456789";

describe("roles: every route × every credential", () => {
	const dir = mkdtempSync(join(tmpdir(), "apiary-test-roles-"));
	let queen: QueenDaemon;
	const tokens = {} as Record<"read" | "schedule" | "admin" | "hive" | "enrol", TokenCreated>;
	const call = (path: string, token: string | null, init: RequestInit = {}) =>
		fetch(`${queen.url}${path}`, {
			...init,
			headers: { ...(init.body ? { "content-type": "application/json" } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
			signal: AbortSignal.timeout(3000),
		});
	const make = async (body: object) => {
		const r = await call("/v1/tokens", ADMIN, { method: "POST", body: JSON.stringify(body) });
		expect(r.status).toBe(201);
		return (await r.json()) as TokenCreated;
	};

	beforeAll(async () => {
		queen = await startQueenDaemon({ listen: "127.0.0.1:0", db: join(dir, "q.db"), staleAfterMs: 2000, evictAfterMs: 30_000, token: ADMIN });
		tokens.read = await make({ role: "read", name: "dashboard" });
		tokens.schedule = await make({ role: "schedule", name: "ci" });
		tokens.admin = await make({ role: "admin", name: "ops" });
		tokens.hive = await make({ role: "hive", hive: "h1" });
		tokens.enrol = await make({ role: "hive", name: "enrolment" });
	});
	afterAll(async () => {
		await queen.close();
		removeDir(dir);
	});

	it("a route without a role cannot be registered: building the app fails naming it", async () => {
		const app = await createServer({
			bodyLimit: 1024,
			token: null,
			openapi: { title: "t", version: "0", description: "" },
			routeRoles: { defaults: { "/openapi.json": "read", "/docs": "read" } },
		});
		expect(() => app.get("/v1/forgotten", async () => "x")).toThrow(/route GET \/v1\/forgotten declares no role/);
	});

	it("401 without a token, 403 naming the role needed below it, through at or above it, on every route", async () => {
		const routes = queen.app.declaredRoutes.filter((r) => r.method !== "HEAD");
		expect(routes.length).toBeGreaterThan(20);
		const roleOf: [string, string | null, Role | null][] = [
			["none", null, null],
			["read", tokens.read.token, "read"],
			["schedule", tokens.schedule.token, "schedule"],
			["admin", tokens.admin.token, "admin"],
			["hive", tokens.hive.token, "hive"],
		];
		const seen: string[] = [];
		for (const r of routes) {
			const path = r.url
				.replace(":id", r.url.startsWith("/v1/tokens") ? "t-000000000000" : r.url.startsWith("/v1/claims") ? "c-000000000000" : "nobody")
				.replace("*", "index.html");
			for (const [who, token, role] of roleOf) {
				let status: number | string;
				try {
					const res = await call(path, token, { method: r.method, body: r.method === "POST" ? "{}" : undefined });
					status = res.status;
					await res.body?.cancel().catch(() => {});
				} catch (e) {
					// A stream (the events) that stayed open: it was let through.
					status = String(e);
				}
				const label = `${r.method} ${r.url} as ${who} → ${status} (needs ${r.role})`;
				seen.push(label);
				if (r.role === "open") expect([401, 403], label).not.toContain(status);
				else if (role === null) expect(status, label).toBe(401);
				else if (!allows(role, r.role)) expect(status, label).toBe(403);
				else expect([401, 403], label).not.toContain(status);
			}
		}
		// The 403 names the role needed.
		const denied = await call("/v1/workers", tokens.read.token, { method: "POST", body: JSON.stringify({ command: ["true"] }) });
		expect(denied.status).toBe(403);
		expect(((await denied.json()) as { message: string }).message).toMatch(/this needs role schedule \(or above\)/);
		expect(seen.some((s) => s.startsWith("POST /v1/tokens as schedule → 403"))).toBe(true);
		expect(seen.some((s) => s.startsWith("GET /healthz as none → 200"))).toBe(true);
	});

	it("secrets are stored as hashes only, listed never, and shown once", async () => {
		const db = readFileSync(join(dir, "q.db")).toString("latin1") + readFileSync(join(dir, "q.db-wal")).toString("latin1");
		// The whole secret (base64url: it may hold "_" itself), after apiary_<id>_.
		for (const t of Object.values(tokens)) expect(db.includes(/^apiary_t-[0-9a-f]{12}_(.+)$/.exec(t.token)![1]!)).toBe(false);
		const list = await (await call("/v1/tokens", ADMIN)).text();
		for (const t of Object.values(tokens)) expect(list.includes(t.token)).toBe(false);
		expect(JSON.parse(list).map((t: { id: string }) => t.id)).toEqual(expect.arrayContaining(Object.values(tokens).map((t) => t.id)));
	});

	it("a revoked token stops at once, and the event stream opened with it is closed within 5 s; an expired one stops too", async () => {
		const t = await make({ role: "read", name: "to-revoke" });
		const res = await call("/v1/events", t.token).catch(() => null);
		// (3 s signal above is for plain requests: read the stream without it.)
		const stream = await fetch(`${queen.url}/v1/events`, { headers: { authorization: `Bearer ${t.token}` } });
		expect(stream.status).toBe(200);
		await res?.body?.cancel().catch(() => {});
		const reader = stream.body!.getReader();
		await reader.read(); // the snapshot
		const ended = (async () => {
			for (;;) if ((await reader.read().catch(() => ({ done: true }))).done) return performance.now();
		})();
		const t0 = performance.now();
		expect((await call(`/v1/tokens/${t.id}`, tokens.admin.token, { method: "DELETE" })).status).toBe(200);
		expect((await call("/v1/hives", t.token)).status).toBe(401);
		expect((await Promise.race([ended, sleep(5000).then(() => null)]))! - t0).toBeLessThan(5000);
		const short = await make({ role: "read", ttlSeconds: 1 });
		expect((await call("/v1/hives", short.token)).status).toBe(200);
		await sleep(1300);
		expect((await call("/v1/hives", short.token)).status).toBe(401);
	});

	it("a hive is only itself: another hive's token is refused (4403), an enrolment gives a hive its own secret once, and revoking it closes the socket", async () => {
		// h1's token, claiming h2.
		const liar = new FakeHive(queen.url, "h2", { token: tokens.hive.token });
		await liar.opened();
		liar.hello();
		await until(() => liar.closed, 5000, "the impostor closed");
		expect(liar.closed).toMatchObject({ code: 4403, reason: expect.stringMatching(/speaks for hive h1, not h2/) });
		expect(queen.registry.getHive("h2")).toBeNull();
		// A read token cannot hold a socket at all.
		const reader = new FakeHive(queen.url, "h3", { token: tokens.read.token });
		await expect(reader.opened()).rejects.toThrow(/HTTP 403/);
		// Enrolment: e1 gets a credential of its own in its welcome.
		const e1 = new FakeHive(queen.url, "e1", { token: tokens.enrol.token });
		const welcome = new Promise<{ credential?: string }>((r) =>
			e1.ws.on("message", (d: Buffer) => {
				const m = JSON.parse(d.toString());
				if (m.type === "welcome") r(m);
			}),
		);
		await e1.opened();
		e1.hello();
		const own = (await welcome).credential!;
		expect(own).toMatch(/^apiary_t-[0-9a-f]{12}_/);
		// The enrolment token cannot speak for e1 again (someone else claiming the enrolled id).
		const again = new FakeHive(queen.url, "e1", { token: tokens.enrol.token, instanceId: "other" });
		await again.opened();
		again.hello();
		await until(() => again.closed, 5000, "the second enrolment refused");
		expect(again.closed).toMatchObject({ code: 4403, reason: expect.stringMatching(/has a credential of its own/) });
		// Its own secret is an HTTP nobody: 403 everywhere.
		expect((await call("/v1/hives", own)).status).toBe(403);
		// Revoking a hive's token closes its socket.
		const h1 = new FakeHive(queen.url, "h1", { token: tokens.hive.token });
		await h1.opened();
		h1.hello();
		h1.heartbeat([]);
		await until(() => queen.registry.getHive("h1")?.state === "ready", 5000, "h1 ready");
		expect((await call(`/v1/tokens/${tokens.hive.id}`, ADMIN, { method: "DELETE" })).status).toBe(200);
		await until(() => h1.closed, 5000, "h1's socket closed");
		expect(h1.closed).toMatchObject({ code: 4403, reason: expect.stringMatching(/revoked/) });
		for (const h of [liar, e1, again]) h.close();
	});

	it("queen token create prints the secret alone; list shows no secret; revoke ends it", async () => {
		const env = { APIARY_QUEEN: queen.url, APIARY_TOKEN: ADMIN };
		const made = await runCli("queen", ["token", "create", "--role", "schedule", "--name", "nightly", "--ttl", "30d"], env);
		expect(made.code, made.stderr).toBe(0);
		expect(made.stdout).toMatch(/^apiary_t-[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$/);
		const secret = made.stdout.trim();
		const listed = await runCli("queen", ["token", "list"], env);
		expect(listed.stdout).toMatch(/schedule\s+-\s+nightly/);
		expect(listed.stdout.includes(secret)).toBe(false);
		expect((await call("/v1/claims", secret)).status).toBe(200);
		const id = /^apiary_(t-[0-9a-f]{12})_/.exec(secret)![1]!;
		expect((await runCli("queen", ["token", "revoke", id], env)).stdout).toBe(`revoked ${id}\n`);
		expect((await call("/v1/claims", secret)).status).toBe(401);
		expect(await runCli("queen", ["token", "create", "--role", "root"], env)).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/--role: expected one of read, schedule, admin, hive/),
		});
		expect(await runCli("queen", ["token", "list"], { APIARY_QUEEN: queen.url, APIARY_TOKEN: secret })).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/--token-file FILE or APIARY_TOKEN/),
		});
	});
});

describe("the audit trail", () => {
	const dir = mkdtempSync(join(tmpdir(), "apiary-test-audit-"));
	let queen: QueenDaemon;
	beforeAll(async () => {
		queen = await startQueenDaemon({ listen: "127.0.0.1:0", db: join(dir, "q.db"), staleAfterMs: 2000, evictAfterMs: 30_000, token: ADMIN });
	});
	afterAll(async () => {
		await queen.close();
		removeDir(dir);
	});

	it("records every change and every refusal with who, from where, what and how it went; admin only", async () => {
		const req = (path: string, token: string | null, init: RequestInit = {}) =>
			fetch(`${queen.url}${path}`, {
				...init,
				headers: { ...(init.body ? { "content-type": "application/json" } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
			});
		const ci = (await (
			await req("/v1/tokens", ADMIN, { method: "POST", body: JSON.stringify({ role: "schedule", name: "ci-runner" }) })
		).json()) as TokenCreated;
		const viewer = (await (await req("/v1/tokens", ADMIN, { method: "POST", body: JSON.stringify({ role: "read", name: "viewer" }) })).json()) as TokenCreated;
		expect((await req("/v1/claims/c-000000000000", ci.token, { method: "DELETE" })).status).toBe(404);
		expect((await req("/v1/workers", viewer.token, { method: "POST", body: JSON.stringify({ command: ["true"], hive: "h9" }) })).status).toBe(403);
		expect((await req("/v1/hives", null)).status).toBe(401);
		const liar = new FakeHive(queen.url, "h2", { token: ADMIN.replace("admin", "wrong") });
		await expect(liar.opened()).rejects.toThrow(/HTTP 401/);
		const records = (await (await req("/v1/audit", ADMIN)).json()) as {
			actor: string;
			role: string | null;
			op: string;
			target: string | null;
			outcome: number;
			remote: string;
		}[];
		const brief = records.map((r) => `${r.actor}|${r.role}|${r.op}|${r.target}|${r.outcome}`);
		expect(brief).toEqual(
			expect.arrayContaining([
				"--token-file|admin|POST /v1/tokens|null|201",
				"ci-runner|schedule|DELETE /v1/claims/:id|c-000000000000|404",
				"viewer|read|POST /v1/workers|hive h9|403",
				"anonymous|null|GET /v1/hives|null|401",
				"anonymous|null|hive socket|null|401",
			]),
		);
		expect(records.every((r) => r.remote === "127.0.0.1" || r.remote === "::ffff:127.0.0.1")).toBe(true);
		// Filters, and the role it needs.
		const mine = (await (await req("/v1/audit?actor=ci-runner", ADMIN)).json()) as unknown[];
		expect(mine).toHaveLength(1);
		expect((await req("/v1/audit", ci.token)).status).toBe(403);
		const cli = await runCli("queen", ["audit", "--op", "POST /v1/workers", "--json"], { APIARY_QUEEN: queen.url, APIARY_TOKEN: ADMIN });
		expect(
			cli.stdout
				.trim()
				.split("\n")
				.map((l) => JSON.parse(l).actor),
		).toEqual(["viewer"]);
	});

	it("a worker placed and stopped through the queen names who did it, in its record and its events", async () => {
		const root = newCgroupRoot();
		writeFileSync(join(dir, "admin.token"), `${ADMIN}\n`);
		const hive = await startHive({
			queen: queen.url,
			name: "named",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			extra: ["--queen-token-file", join(dir, "admin.token")],
		});
		try {
			await until(() => queen.registry.getHive("named")?.state === "ready", 15_000, "the hive ready");
			const make = async (body: object) =>
				(await (
					await fetch(`${queen.url}/v1/tokens`, {
						method: "POST",
						headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
						body: JSON.stringify(body),
					})
				).json()) as TokenCreated;
			const ci = await make({ role: "schedule", name: "nightly-ci" });
			const ops = await make({ role: "admin", name: "oncall" });
			const placed = await fetch(`${queen.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json", authorization: `Bearer ${ci.token}` },
				body: JSON.stringify({ id: "named-1", hive: "named", command: ["sleep", "60"] }),
			});
			expect(placed.status).toBe(201);
			await until(() => queen.registry.getWorker("named-1", "named")?.placedBy, 10_000, "placedBy at the queen");
			expect(queen.registry.getWorker("named-1", "named")!.placedBy).toEqual({ tokenId: ci.id, name: "nightly-ci" });
			const stopped = await fetch(`${queen.url}/v1/workers/named-1?hive=named`, { method: "DELETE", headers: { authorization: `Bearer ${ops.token}` } });
			expect(stopped.status).toBe(200);
			expect(((await stopped.json()) as { stoppedBy?: unknown }).stoppedBy).toEqual({ tokenId: ops.id, name: "oncall" });
			await until(() => queen.registry.getWorker("named-1", "named")?.stoppedBy, 10_000, "stoppedBy at the queen");
			// A caller cannot claim to be someone else: placedBy is not part of a placement's body.
			const forged = await fetch(`${queen.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json", authorization: `Bearer ${ci.token}` },
				body: JSON.stringify({ hive: "named", command: ["true"], placedBy: { tokenId: null, name: "someone-else" } }),
			});
			expect(forged.status).toBe(400);
		} finally {
			await hive.stop();
			await removeCgroupRoot(root);
		}
	});
});

describe("a real hive enrolled with an enrolment token", () => {
	const dir = mkdtempSync(join(tmpdir(), "apiary-test-enrol-"));
	const root = newCgroupRoot();
	let queen: QueenDaemon;
	let hive: Daemon | null = null;
	beforeAll(async () => {
		queen = await startQueenDaemon({ listen: "127.0.0.1:0", db: join(dir, "q.db"), staleAfterMs: 2000, evictAfterMs: 30_000, token: ADMIN });
	});
	afterAll(async () => {
		await hive?.stop();
		await queen.close();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("keeps the secret it was given (0600, in its state dir) and reconnects with it, after the enrolment token is revoked too", async () => {
		const r = await fetch(`${queen.url}/v1/tokens`, {
			method: "POST",
			headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
			body: JSON.stringify({ role: "hive", name: "rack-7 enrolment" }),
		});
		const enrol = (await r.json()) as TokenCreated;
		writeFileSync(join(dir, "enrol.token"), `${enrol.token}\n`);
		const args = { queen: queen.url, name: "rack7-a", stateDir: join(dir, "hive"), cgroupRoot: root, extra: ["--queen-token-file", join(dir, "enrol.token")] };
		hive = await startHive(args);
		await until(() => queen.registry.getHive("rack7-a")?.state === "ready", 15_000, "enrolled and ready");
		const file = join(dir, "hive", "queen.credential");
		await until(() => existsSync(file), 5000, "the credential kept");
		expect(statSync(file).mode & 0o777).toBe(0o600);
		expect(readFileSync(file, "utf8")).toMatch(/^apiary_t-[0-9a-f]{12}_/);
		// The enrolment token goes; the hive, restarted, still gets in, with its own secret.
		await fetch(`${queen.url}/v1/tokens/${enrol.id}`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN}` } });
		await hive.stop();
		hive = await startHive(args);
		await until(() => /connected to the queen/.test(hive!.err()) && queen.registry.getHive("rack7-a")?.state === "ready", 15_000, "back, with its own secret");
		expect(hive.err()).not.toMatch(/refused/);
	});
});
