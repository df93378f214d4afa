import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { authFor, type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Workers are not root, and the hive's API is a privilege boundary on
// loopback too (issue #27): before, a request from uid 65534 to 127.0.0.1
// started a worker that printed `id -u` = 0, and a root worker could read
// the token file itself.

const post = (url: string, body: object) =>
	json(url, { method: "POST", headers: { "content-type": "application/json", ...authFor(url) }, body: JSON.stringify(body) });

describe("a root hive's workers", () => {
	const dir = tempDir("fault-run-as");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	const out = (id: string) =>
		until(
			async () => {
				const w = (await json(`${hive.url}/v1/workers/${id}`)).body;
				return w?.state === "exited" ? readFileSync(join(dir, "hive", "logs", `${id}.log`), "utf8") : null;
			},
			20_000,
			`${id} done`,
		);

	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db") });
		// The hive's defaults: no --worker-user, no --allow-root-workers; nobody may be asked for.
		hive = await startHive({
			queen: queen.url,
			name: "runas",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			rootWorkers: false,
			extra: ["--allow-user", "daemon"],
		});
	});
	afterAll(async () => {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("run as the worker user (not root), with its HOME, USER and no-new-privileges, and without the hive's credentials", async () => {
		expect(hive.out()).toMatch(/workers run as: (apiary-worker|nobody)/);
		const r = await post(`${hive.url}/v1/workers`, {
			id: "who",
			command: ["sh", "-c", 'echo "uid=$(id -u) user=$USER home=$HOME token=${APIARY_TOKEN:-none}"; grep NoNewPrivs /proc/self/status'],
			env: {},
		});
		expect(r.status).toBe(201);
		const text = await out("who");
		expect(text).toMatch(/^uid=(\d+) user=(apiary-worker|nobody) home=\S+ token=none$/m);
		expect(Number(/uid=(\d+)/.exec(text)![1])).not.toBe(0);
		expect(text).toMatch(/NoNewPrivs:\s+1/);
		expect((await json(`${hive.url}/v1/workers/who`)).body.user).toMatch(/^(apiary-worker|nobody)$/);
	});

	it("cannot read the hive's API token or records, write its logs, or use its API, and root or other users are refused", async () => {
		const token = join(dir, "hive", "api.token");
		expect(statSync(token).mode & 0o777).toBe(0o600);
		const probe = [
			`cat ${token} >/dev/null 2>&1 && echo read-token || echo no-token`,
			`ls ${join(dir, "hive", "workers")} >/dev/null 2>&1 && echo read-records || echo no-records`,
			`echo x >> ${join(dir, "hive", "logs", "other.log")} 2>/dev/null && echo wrote-logs || echo no-logs`,
			// The API on loopback: no token, no spawn (a worker that could would be its own root).
			`curl -s -o /dev/null -w 'api %{http_code}\\n' -X POST -H 'content-type: application/json' -d '{"command":["id"]}' ${hive.url}/v1/workers`,
		].join("; ");
		expect((await post(`${hive.url}/v1/workers`, { id: "probe", command: ["sh", "-c", probe], cwd: "/" })).status).toBe(201);
		const text = await out("probe");
		expect(text).toContain("no-token");
		expect(text).toContain("no-records");
		expect(text).toContain("no-logs");
		expect(text).toMatch(/api 401/);
		expect(existsSync(join(dir, "hive", "logs", "other.log"))).toBe(false);
		// Root is refused without --allow-root-workers; a user not on --allow-user too; one on it is fine.
		expect(await post(`${hive.url}/v1/workers`, { command: ["id"], user: "root" })).toMatchObject({
			status: 403,
			body: { message: expect.stringMatching(/user: root is not allowed|--allow-root-workers/) },
		});
		expect(await post(`${hive.url}/v1/workers`, { command: ["id"], user: "mail" })).toMatchObject({
			status: 403,
			body: { message: expect.stringMatching(/--allow-user mail/) },
		});
		expect((await post(`${hive.url}/v1/workers`, { id: "as-daemon", command: ["sh", "-c", "id -un"], user: "daemon", cwd: "/" })).status).toBe(201);
		expect(await out("as-daemon")).toBe("daemon\n");
		// Without the token the API says how to get one; with the state dir's file the CLI works.
		const bare = await fetch(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ command: ["id"] }),
		});
		expect(bare.status).toBe(401);
		const ps = await runCli("hive", ["ps", "-a", "--hive", hive.url, "--state-dir", join(dir, "hive")], { APIARY_HIVE_TOKEN: "" });
		expect(ps.code, ps.stderr).toBe(0);
		expect(ps.stdout).toMatch(/who\s+exited/);
	});

	it("a worker of one user cannot signal a worker of another", async () => {
		expect((await post(`${hive.url}/v1/workers`, { id: "victim", command: ["sleep", "60"], user: "daemon", cwd: "/" })).status).toBe(201);
		const pid = await until(async () => (await json(`${hive.url}/v1/workers/victim`)).body?.pid, 10_000, "victim's pid");
		expect(
			(await post(`${hive.url}/v1/workers`, { id: "attacker", command: ["sh", "-c", `kill -9 ${pid} 2>&1 && echo killed || echo refused`], cwd: "/" })).status,
		).toBe(201);
		expect(await out("attacker")).toMatch(/refused|Operation not permitted/);
		expect((await json(`${hive.url}/v1/workers/victim`)).body.state).toBe("running");
		await json(`${hive.url}/v1/workers/victim`, { method: "DELETE" });
	});

	it("reads its own cgroup (its limits: runtimes size themselves by them), not another user's, cannot list the workers, and writes none", async () => {
		expect(
			(await post(`${hive.url}/v1/workers`, { id: "neighbour", command: ["sleep", "60"], user: "daemon", cwd: "/", memoryBytes: 300 * 2 ** 20 })).status,
		).toBe(201);
		const theirs = await until(async () => (await json(`${hive.url}/v1/workers/neighbour`)).body?.cgroup as string | undefined, 10_000, "its cgroup");
		const mine = join(theirs, "..", "reader");
		const probe = [
			`cat ${mine}/memory.limit_in_bytes 2>/dev/null || echo no-own`,
			`cat ${theirs}/memory.limit_in_bytes >/dev/null 2>&1 && echo read-theirs || echo no-theirs`,
			`ls ${join(theirs, "..")} >/dev/null 2>&1 && echo listed || echo no-list`,
			`{ echo 1 > ${mine}/memory.limit_in_bytes; } 2>/dev/null && echo wrote-own || echo no-write`,
			`mkdir ${mine}/escape 2>/dev/null && echo made-child || echo no-child`,
		].join("; ");
		expect((await post(`${hive.url}/v1/workers`, { id: "reader", command: ["sh", "-c", probe], cwd: "/", memoryBytes: 256 * 2 ** 20 })).status).toBe(201);
		expect((await out("reader")).split("\n")).toEqual([String(256 * 2 ** 20), "no-theirs", "no-list", "no-write", "no-child", ""]);
		await json(`${hive.url}/v1/workers/neighbour`, { method: "DELETE" });
	});
});
