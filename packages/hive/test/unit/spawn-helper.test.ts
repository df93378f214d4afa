import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SpawnHelper, type WorkerProcess, workerEnv } from "../../src/spawner.ts";
import { helperPids } from "../helper-pids.ts";

// The helper forks workers for the hive, mostly from shells forked ahead of
// time (each turned into its worker by a script on its stdin). A worker from
// the pool must be exactly what a plain fork would have made.
const dir = mkdtempSync(join(tmpdir(), "apiary-test-helper-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ended = (w: WorkerProcess) => new Promise<[number | null, string | null]>((r) => w.onExit((c, s) => r([c, s])));

describe("the spawn helper", () => {
	it("gives workers their exact argv (quotes, newlines, $, leading dashes), env (added, changed, removed), cwd and log, and reports exit codes and signals", async () => {
		const helper = new SpawnHelper();
		try {
			helper.start();
			await new Promise((r) => setTimeout(r, 300)); // the pool fills
			const argv = ["it's", 'a "b"', "$HOME `x` $(y)", "line1\nline2", "-n", "", "\\"];
			// As the hive asks (workerEnv): PWD is the worker's cwd, no OLDPWD of the hive's.
			const env = workerEnv(process.env, { ADDED: "a'b c", HOME: "/changed" }, "/tmp");
			delete env.LANG;
			delete env.PATH;
			const command = ["/bin/sh", "-c", 'printf "%s|" "$@"; echo; pwd; /usr/bin/env | LC_ALL=C /usr/bin/sort; exit 7', "sh", ...argv];
			// What a plain fork with that env and cwd prints: the reference.
			const plain = spawnSync(command[0]!, command.slice(1), { env, cwd: "/tmp", encoding: "utf8" });
			expect(plain.status).toBe(7);
			expect(plain.stdout).toContain("ADDED=a'b c\n");
			expect(plain.stdout).not.toMatch(/^(LANG|PATH)=/m);
			const runs = Array.from({ length: 20 }, (_, i) => {
				const log = join(dir, `w${i}.log`);
				return helper.spawn({ command, procsFiles: [], env, cwd: "/tmp", logPath: log }).then(async (w) => ({ w, log, end: await ended(w) }));
			});
			// More spawns than the pool holds: some come from the pool, the rest from fresh forks; all alike.
			const done = await Promise.all(runs);
			for (const r of done) {
				expect(r.end).toEqual([7, null]);
				expect(readFileSync(r.log, "utf8")).toBe(plain.stdout);
			}
			// One from the pool for sure: the helper fills it a moment after it starts (later on a loaded machine).
			let pooled = false;
			for (let i = 0; i < 50 && !pooled; i++) {
				await new Promise((r) => setTimeout(r, 100));
				const w = await helper.spawn({ command, procsFiles: [], env, cwd: "/tmp", logPath: join(dir, `pooled${i}.log`) });
				expect(await ended(w)).toEqual([7, null]);
				expect(readFileSync(join(dir, `pooled${i}.log`), "utf8")).toBe(plain.stdout);
				pooled = w.pooled;
			}
			expect(pooled).toBe(true);
			// A helper with no pool forks a shell on demand every time: alike too.
			const bare = new SpawnHelper(undefined, { pool: 0 });
			try {
				const w = await bare.spawn({ command, procsFiles: [], env, cwd: "/tmp", logPath: join(dir, "bare.log") });
				expect(w.pooled).toBe(false);
				expect(await ended(w)).toEqual([7, null]);
				expect(readFileSync(join(dir, "bare.log"), "utf8")).toBe(plain.stdout);
			} finally {
				bare.close();
			}
			// A name that is no shell identifier: the entering shell of a plain fork drops it, and so does the pool's.
			const odd = { ...env, "ODD-NAME": "x" };
			const oddPlain = spawnSync("/bin/sh", ["-c", 'exec "$@"', "sh", ...command], { env: odd, cwd: "/tmp", encoding: "utf8" });
			expect(oddPlain.status).toBe(7);
			const oddRun = await helper.spawn({ command, procsFiles: [], env: odd, cwd: "/tmp", logPath: join(dir, "odd.log") });
			expect(await ended(oddRun)).toEqual([7, null]);
			expect(readFileSync(join(dir, "odd.log"), "utf8")).toBe(oddPlain.stdout);
			const killed = await helper.spawn({ command: ["sleep", "30"], procsFiles: [], env: process.env, cwd: "/", logPath: join(dir, "k.log") });
			process.kill(killed.pid, "SIGKILL");
			expect(await ended(killed)).toEqual([null, "SIGKILL"]);
		} finally {
			helper.close();
		}
	});

	it("a worker's environment is exactly the one asked, whatever PWD and OLDPWD the hive had: the helper's own shell (its cd) adds or changes nothing", async () => {
		// The hive's own environment, as the helper and its forked-ahead shells inherit it: with and without PWD/OLDPWD.
		const hiveEnvs: Record<string, string | undefined>[] = [
			{ PWD: "/usr", OLDPWD: "/var" },
			{ PWD: undefined, OLDPWD: undefined },
		];
		const saved = { PWD: process.env.PWD, OLDPWD: process.env.OLDPWD };
		const restore = () => {
			for (const [k, v] of Object.entries(saved)) {
				if (v === undefined) delete process.env[k];
				else process.env[k] = v;
			}
		};
		// The worker prints its environment with no shell of its own in between.
		const printed = (log: string) =>
			Object.fromEntries(
				readFileSync(log, "utf8")
					.split("\n")
					.filter(Boolean)
					.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
			);
		const asked = (extra: Record<string, string>) => ({ PATH: "/usr/bin:/bin", LC_ALL: "C", ...extra });
		let n = 0;
		for (const hiveEnv of hiveEnvs) {
			for (const [k, v] of Object.entries(hiveEnv)) {
				if (v === undefined) delete process.env[k];
				else process.env[k] = v;
			}
			// Pool and on-demand both: a cd happens only in the pooled shell, but neither may differ.
			const helpers = [new SpawnHelper(), new SpawnHelper(undefined, { pool: 0 })];
			try {
				for (const h of helpers) h.start();
				restore();
				await new Promise((r) => setTimeout(r, 300)); // the pool fills
				for (const h of helpers) {
					for (const env of [asked({ PWD: "/tmp" }), asked({ PWD: "/tmp", OLDPWD: "/asked/for" })]) {
						const log = join(dir, `env${n++}.log`);
						const w = await h.spawn({ command: ["/usr/bin/env"], procsFiles: [], env, cwd: "/tmp", logPath: log });
						expect(await ended(w)).toEqual([0, null]);
						expect(printed(log)).toEqual(env);
					}
				}
			} finally {
				restore();
				for (const h of helpers) h.close();
			}
		}
		// The hive's side: its OLDPWD never reaches a worker, PWD is the worker's cwd, the spawn's values win.
		expect(workerEnv({ A: "1", PWD: "/hive", OLDPWD: "/before" }, { B: "2" }, "/work/dir")).toEqual({ A: "1", B: "2", PWD: "/work/dir" });
		expect(workerEnv({ A: "1" }, { A: "3", OLDPWD: "/asked" }, "/w")).toEqual({ A: "3", OLDPWD: "/asked", PWD: "/w" });
	});

	it("a worker enters every cgroup.procs file it is given before its command runs, and a refused write fails it with 125", async () => {
		const helper = new SpawnHelper();
		try {
			const procs = [join(dir, "procs-a"), join(dir, "procs-b")];
			const w = await helper.spawn({ command: ["true"], procsFiles: procs, env: process.env, cwd: "/", logPath: join(dir, "e.log") });
			expect(await ended(w)).toEqual([0, null]);
			for (const p of procs) expect(readFileSync(p, "latin1").trim()).toBe(String(w.pid));
			const bad = await helper.spawn({
				command: ["true"],
				procsFiles: [join(dir, "no/such/dir/cgroup.procs")],
				env: process.env,
				cwd: "/",
				logPath: join(dir, "f.log"),
			});
			expect(await ended(bad)).toEqual([125, null]);
			expect(readFileSync(join(dir, "f.log"), "utf8")).toMatch(/apiary: cannot enter cgroup/);
		} finally {
			helper.close();
		}
	});

	it("a log that cannot be opened fails the spawn; when the helper dies its running workers are reported lost and the next spawn starts a new helper", async () => {
		const lost: string[] = [];
		const helper = new SpawnHelper();
		try {
			await expect(helper.spawn({ command: ["true"], procsFiles: [], env: process.env, cwd: "/", logPath: join(dir, "no/such/dir/x.log") })).rejects.toThrow(
				/ENOENT/,
			);
			const w = await helper.spawn({ command: ["sleep", "30"], procsFiles: [], env: process.env, cwd: "/", logPath: join(dir, "l.log") });
			w.onLost((why) => lost.push(why));
			const [pid] = helperPids();
			expect(pid).toBeGreaterThan(0);
			process.kill(pid!, "SIGKILL");
			for (let i = 0; i < 100 && lost.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
			expect(lost).toEqual(["the hive's spawn helper ended (SIGKILL)"]);
			// The worker itself goes on: only its parent died.
			expect(() => process.kill(w.pid, 0)).not.toThrow();
			process.kill(w.pid, "SIGKILL");
			const next = await helper.spawn({ command: ["true"], procsFiles: [], env: process.env, cwd: "/", logPath: join(dir, "n.log") });
			expect(await ended(next)).toEqual([0, null]);
			expect(helperPids()).not.toContain(pid);
		} finally {
			helper.close();
		}
	});
});
