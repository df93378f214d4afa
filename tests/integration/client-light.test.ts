import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = new URL("../../", import.meta.url).pathname;
const PROBE = join(ROOT, "packages/test-support/src/module-probe.mjs");

/** Runs a CLI with the module probe; its exit code, output and every module it loaded. */
function probed(bin: string, args: string[], out: string): Promise<{ code: number; stdout: string; stderr: string; modules: string[] }> {
	return new Promise((resolve) => {
		execFile(
			process.execPath,
			["--import", PROBE, join(ROOT, bin), ...args],
			{ env: { ...process.env, APIARY_PROBE_OUT: out }, timeout: 30_000 },
			(err, stdout, stderr) =>
				resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, modules: readFileSync(out, "utf8").split("\n") }),
		);
	});
}

// What only a daemon needs: a client command that loads any of it is paying
// for the server (and printing its warnings) on every run.
const SERVER_ONLY =
	/\/node_modules\/(fastify|@fastify|ws|ajv|systeminformation|pidusage|prom-client|@sinclair\/typebox|eventsource)\/|\/src\/(daemon|socket|registry|app|hive|events|sampler)\.ts$|\/store\/|\/cgroup\/|^node:sqlite$/;

describe("client commands stay light", () => {
	const dir = tempDir("light");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db") });
		hive = await startHive({ queen: queen.url, name: "light-h", stateDir: join(dir, "hive"), cgroupRoot: root });
		await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "lw", command: ["sleep", "60"] }),
		});
		for (let i = 0; i < 100 && (await json(`${queen.url}/v1/workers/lw`)).status !== 200; i++) await sleep(50);
	});
	afterAll(async () => {
		await hive.stop("SIGKILL");
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("queen workers and queen gpus load no server module and print nothing on stderr", async () => {
		for (const args of [["workers"], ["gpus"], ["hives"]]) {
			const r = await probed("packages/queen/bin/queen.js", [...args, "--queen", queen.url], join(dir, `q-${args[0]}.txt`));
			expect(r.code).toBe(0);
			expect(r.stderr).toBe("");
			expect(r.modules.filter((m) => SERVER_ONLY.test(m))).toEqual([]);
			expect(r.modules.some((m) => m.endsWith("/queen/src/cli.ts"))).toBe(true); // the probe saw the CLI itself
		}
		const w = await probed("packages/queen/bin/queen.js", ["workers", "--queen", queen.url], join(dir, "q-w2.txt"));
		expect(w.stdout).toMatch(/light-h\s+lw\s+running/);
	});

	it("hive ps loads no server module and prints nothing on stderr", async () => {
		// Its token from the hive's state dir, as a person's `hive ps` finds it.
		const r = await probed("packages/hive/bin/hive.js", ["ps", "--hive", hive.url, "--state-dir", join(dir, "hive")], join(dir, "h-ps.txt"));
		expect(r.code).toBe(0);
		expect(r.stderr).toBe("");
		expect(r.stdout).toMatch(/lw\s+running/);
		expect(r.modules.filter((m) => SERVER_ONLY.test(m))).toEqual([]);
		expect(r.modules.some((m) => m.endsWith("/hive/src/cli.ts"))).toBe(true);
	});
});
