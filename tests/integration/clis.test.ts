import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep, until } from "@apiary/test-support/util";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";

const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

function queenCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
	return new Promise((resolve) => {
		execFile(process.execPath, [QUEEN_BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
			resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
		);
	});
}

describe("the queen CLI against real daemons", () => {
	const dir = tempDir("qcli");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	let env: NodeJS.ProcessEnv;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db") });
		hive = await startHive({ queen: queen.url, name: "cli-h", stateDir: join(dir, "hive"), cgroupRoot: root });
		env = { APIARY_QUEEN: queen.url };
		await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "cw", command: ["sleep", "60"], gpus: ["3"] }),
		});
		for (let i = 0; i < 100 && (await json(`${queen.url}/v1/workers/cw`)).status !== 200; i++) await sleep(50);
	});
	afterAll(async () => {
		await hive.stop("SIGKILL");
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("hives, workers and gpus print aligned tables, and JSON with --json", async () => {
		const hives = await queenCli(["hives"], env);
		expect(hives.stdout).toMatch(
			/^HIVE\s+STATE\s+SCHEDULING\s+LAST SEEN\s+DRIVER\s+WORKERS\s+GPUS\s+LABELS\s+HOST\ncli-h\s+ready\s+schedulable\s+[\d.]+s ago\s+v1\s+1\s+4\s+-\s+/,
		);
		const workers = await queenCli(["workers"], env);
		expect(workers.stdout).toMatch(/cli-h\s+cw\s+running/);
		const gpus = await queenCli(["gpus"], env);
		expect(gpus.stdout).toMatch(/cli-h\s+3\s+NVIDIA A100-SXM4-80GB\s+4 MiB\s+81920 MiB\s+0%\s+30C\s+healthy\s+held by cw/);
		const free = JSON.parse((await queenCli(["gpus", "--free", "--min-memory", "16G", "--json"], env)).stdout);
		expect(free.map((g: { index: number }) => g.index)).toEqual([2]);
		expect(JSON.parse((await queenCli(["gpus", "--free", "--min-memory", "80G", "--json"], env)).stdout)).toEqual([]);
	});

	it("tail --json prints one event per line and follows live events", async () => {
		const tail = spawn(process.execPath, [QUEEN_BIN, "tail", "--json", "--hive", "cli-h"], {
			env: { ...process.env, ...env },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let out = "";
		tail.stdout.on("data", (d) => {
			out += d;
		});
		try {
			for (let i = 0; i < 100 && !out.includes("snapshot"); i++) await sleep(50);
			await json(`${hive.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id: "tailed", command: ["true"] }),
			});
			for (let i = 0; i < 200 && !out.includes('"worker.exited"'); i++) await sleep(50);
			const lines = out
				.trim()
				.split("\n")
				.map((l) => JSON.parse(l));
			expect(lines[0].type).toBe("snapshot");
			expect(lines.filter((e) => e.workerId === "tailed").map((e) => e.type)).toEqual(expect.arrayContaining(["worker.spawned", "worker.exited"]));
		} finally {
			tail.kill();
		}
	});

	it("backup copies the database while the queen runs, and a queen started on the copy has the registry", async () => {
		const copy = join(dir, "copy.db");
		const b = await queenCli(["backup", "--db", join(dir, "q.db"), copy]);
		expect(b).toMatchObject({ code: 0, stdout: expect.stringMatching(/^backed up .* \(\d+ pages\)/) });
		const restored = await startQueen({ db: copy });
		try {
			const hives = JSON.parse((await queenCli(["hives", "--json"], { APIARY_QUEEN: restored.url })).stdout);
			expect(hives).toMatchObject([{ id: "cli-h", state: "unknown" }]);
			expect(JSON.parse((await queenCli(["workers", "--json"], { APIARY_QUEEN: restored.url })).stdout).map((w: { id: string }) => w.id)).toContain("cw");
		} finally {
			await restored.stop();
		}
		expect((await queenCli(["backup", "--db", join(dir, "missing.db"), copy])).stderr).toMatch(/no database at/);
	});

	it("queen start runs Node with 16 MiB semi-spaces in the process it was started as (same pid), unless a size is given", async () => {
		const argv = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
		expect(argv(queen.proc.pid!).slice(0, 3)).toEqual([process.execPath, "--max-semi-space-size=16", QUEEN_BIN]);
		expect((await json(`${queen.url}/v1/hives`)).status).toBe(200);
		const own = await startQueen({ db: join(dir, "semi.db"), env: { NODE_OPTIONS: "--max-semi-space-size=32" } });
		try {
			expect(argv(own.proc.pid!)).not.toContain("--max-semi-space-size=16");
			expect(argv(own.proc.pid!)[1]).toBe(QUEEN_BIN);
		} finally {
			await own.stop();
		}
	});

	it("bad usage exits 2 naming the flag; an unreachable queen exits 1", async () => {
		expect(await queenCli(["gpus", "--min-memory", "lots"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/--min-memory: not a size: "lots"/) });
		expect(await queenCli(["tail", "--types", "!!"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/querystring\.types must match pattern/) });
		expect(await queenCli(["tail", "--coalesce", "50ms"], env)).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/--coalesce: must be between 100ms and 10m/),
		});
		expect(await queenCli(["tail", "--coalesce", "often"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/--coalesce/) });
		// Well-formed but unknown: the queen's 400 reaches the person (it used to exit 13 on an unsettled await).
		expect(await queenCli(["tail", "--types", "worker.bogus"], env)).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/"worker\.bogus" matches no event type \(known: hive\.joined/),
		});
		// Any 4xx is the request's fault: exit 2 with the queen's own message (a worker it does not know here).
		expect(await queenCli(["kill", "nobody-here"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/nobody-here/) });
		expect(await queenCli(["logs", "nobody-here"], env)).toMatchObject({ code: 2, stderr: expect.stringMatching(/nobody-here/) });
		expect(await queenCli(["workers", "--state", "bogus"], env)).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/--state: expected one of running, exited, evicted, all/),
		});
		expect(await queenCli(["start", "--stale-after", "5s", "--evict-after", "2s"], env)).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/--evict-after must be longer/),
		});
		// libpq's multi-host --db: a standby mode is no use to a queen, which writes (nothing is started).
		expect(
			await queenCli(["start", "--listen", "127.0.0.1:0", "--db", "postgres://u@127.0.0.1:1,127.0.0.1:2/d?target_session_attrs=standby"], env),
		).toMatchObject({
			code: 2,
			stderr: expect.stringMatching(/queen start: --db: target_session_attrs=standby: a queen writes/),
		});
		expect(await queenCli(["start", "--listen", "0.0.0.0:0", "--db", join(dir, "x.db")], { APIARY_TOKEN: "" })).toMatchObject({
			code: 1,
			stderr: expect.stringMatching(/refusing to listen on 0\.0\.0\.0 without a token/),
		});
		expect((await queenCli(["frob"], env)).code).toBe(2);
		expect(await queenCli(["hives"], { APIARY_QUEEN: "http://127.0.0.1:1" })).toMatchObject({ code: 1, stderr: expect.stringMatching(/cannot reach/) });
		const flags: Record<string, string[]> = {
			start: ["--listen", "--db", "--stale-after", "--evict-after", "--busy-memory", "--token-file"],
			tail: ["--types", "--hive", "--worker", "--since", "--json", "--queen"],
			gpus: ["--free", "--min-memory", "--hive", "--name", "--json", "--queen"],
			workers: ["--hive", "--state", "--json"],
		};
		for (const [cmd, list] of Object.entries(flags)) {
			const h = await queenCli([cmd, "--help"]);
			for (const f of list) expect(h.stdout, `${cmd} --help`).toContain(f);
		}
	});
});

describe("queen tail across a queen restart", () => {
	it("reconnects by itself and resumes with Last-Event-ID: every lifecycle event once, none lost, no id twice", async () => {
		const dir = tempDir("tail");
		const root = newCgroupRoot();
		const db = join(dir, "q.db");
		let queen = await startQueen({ db });
		const hive = await startHive({ queen: queen.url, name: "th", stateDir: join(dir, "hive"), cgroupRoot: root });
		const tail = spawn(process.execPath, [QUEEN_BIN, "tail", "--json", "--types", "worker.*,hive.*"], {
			env: { ...process.env, APIARY_QUEEN: queen.url },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let out = "";
		let err = "";
		tail.stdout.on("data", (d) => {
			out += d;
		});
		tail.stderr.on("data", (d) => {
			err += d;
		});
		const post = (id: string) =>
			json(`${hive.url}/v1/workers`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ id, command: ["sh", "-c", "sleep 0.2"] }),
			});
		try {
			await until(() => out.includes('"snapshot"'), 10_000, "snapshot");
			await post("before");
			await until(() => out.includes('"worker.exited"'), 10_000, "before's exit");
			const port = queen.port;
			await queen.stop();
			await until(() => err.includes("reconnecting"), 10_000, "tail to notice");
			queen = await startQueen({ db, port });
			await until(async () => (await json(`${queen.url}/v1/hives/th`)).body?.state === "ready", 30_000, "hive back");
			await post("after");
			await until(() => out.split("\n").some((l) => l.includes('"worker.exited"') && l.includes('"after"')), 30_000, "after's exit in tail");
			const lines = out
				.trim()
				.split("\n")
				.map((l) => JSON.parse(l));
			const snapshotId = lines[0].id;
			const got = lines.slice(1).map((e: { id: number }) => e.id);
			// Every id once, in order; stats samples (worker.updated) are not
			// durable, so the database is compared with the rest.
			expect(got).toEqual([...new Set(got)].sort((a, b) => a - b));
			const durable = lines
				.slice(1)
				.filter((e: { type: string }) => e.type !== "worker.updated")
				.map((e: { id: number }) => e.id);
			const { DatabaseSync } = await import("node:sqlite");
			const d = new DatabaseSync(db, { readOnly: true });
			const want = (
				d
					.prepare("SELECT id FROM events WHERE id > ? AND id <= ? AND (type LIKE 'worker.%' OR type LIKE 'hive.%') ORDER BY id")
					.all(snapshotId, got.at(-1)!) as { id: number }[]
			).map((r) => r.id);
			d.close();
			expect(durable).toEqual(want);
			expect(lines.filter((e: { type: string }) => e.type === "snapshot")).toHaveLength(1); // resumed, not restarted
		} finally {
			tail.kill();
			await hive.stop("SIGKILL");
			await queen.stop();
			await removeCgroupRoot(root);
			removeDir(dir);
		}
	}, 90_000);
});

describe("npm start", () => {
	it("runs a queen and a local hive that has joined it", async () => {
		const dir = tempDir("start");
		const root = newCgroupRoot();
		const proc = spawn("npm", ["start"], {
			cwd: ROOT,
			env: {
				...process.env,
				APIARY_STATE_DIR: dir,
				APIARY_QUEEN_LISTEN: "127.0.0.1:0",
				APIARY_HIVE_LISTEN: "127.0.0.1:0",
				APIARY_CGROUP_ROOT: root,
				APIARY_NVIDIA_SMI: "/nonexistent",
			},
			stdio: ["ignore", "pipe", "pipe"],
			detached: true,
		});
		let out = "";
		proc.stdout!.on("data", (d) => {
			out += d;
		});
		try {
			for (let i = 0; i < 300 && !out.includes("Ctrl-C"); i++) await sleep(50);
			const queenUrl = /queen\s+(http:\/\/\S+)/.exec(out)![1]!;
			const hiveUrl = /hive "local"\s+(http:\/\/\S+)/.exec(out)![1]!;
			expect((await json(`${hiveUrl}/healthz`)).body.ok).toBe(true);
			let hives: { id: string; state: string }[] = [];
			for (let i = 0; i < 100; i++) {
				hives = (await json(`${queenUrl}/v1/hives`)).body;
				if (hives[0]?.state === "ready") break;
				await sleep(50);
			}
			expect(hives).toMatchObject([{ id: "local", state: "ready" }]);
		} finally {
			process.kill(-proc.pid!, "SIGINT");
			await new Promise((r) => proc.once("exit", r));
			await removeCgroupRoot(root);
			removeDir(dir);
		}
	});
});
