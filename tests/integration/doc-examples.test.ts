import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The docs' examples, run as written against real daemons: only the
// addresses and paths are substituted (the defaults 127.0.0.1:7070/:7071,
// localhost:7070, /var/lib/apiary and /backup), so an example that stops
// working fails npm test. docs.test.ts checks every command's flags; this
// runs the ones a test can run.

const ROOT = new URL("../../", import.meta.url).pathname;
const doc = (f: string) => readFileSync(join(ROOT, f), "utf8");
const blocks = (text: string, lang: string) => [...text.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, "g"))].map((m) => m[1]!);

/** `$ cmd` lines and the output shown under each. */
function consoleSteps(block: string): { cmd: string; out: string[] }[] {
	const steps: { cmd: string; out: string[] }[] = [];
	for (const line of block.split("\n")) {
		if (line.startsWith("$ ")) steps.push({ cmd: line.slice(2), out: [] });
		else if (line.trim() && steps.length) steps.at(-1)!.out.push(line);
	}
	return steps;
}

/** A cell whose value is the machine's, not the doc's: ids, numbers with units, times. */
const VARIES = /^(w-[0-9a-f]{8}|\d+|\d+(\.\d+)?([KMGT%]|ms|s|m|h)?|-)$/;
/** A table line as the doc shows it and as printed: the same columns, the same fixed cells. */
function sameShape(shown: string, got: string): boolean {
	const a = shown.trim().split(/\s{2,}/);
	const b = got.trim().split(/\s{2,}/);
	return a.length === b.length && a.every((cell, i) => (VARIES.test(cell) ? VARIES.test(b[i]!) : cell === b[i]));
}

describe("the docs' examples, run as written", () => {
	const dir = tempDir("doc-examples");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	let env: NodeJS.ProcessEnv;
	const sh = (cmd: string, timeoutMs = 60_000) => spawnSync("bash", ["-c", cmd], { cwd: ROOT, env, encoding: "utf8", timeout: timeoutMs });
	/** The doc's defaults replaced by this test's daemons and folders. */
	const local = (cmd: string) =>
		cmd
			.replaceAll("/var/lib/apiary/queen/queen.db", join(dir, "queen.db"))
			.replaceAll("/backup/", `${dir}/backup-`)
			.replaceAll("localhost:7070", new URL(queen.url).host);

	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "queen.db"), sqlite: true });
		hive = await startHive({ queen: queen.url, name: "docs", stateDir: join(dir, "hive"), cgroupRoot: root });
		await until(async () => (await json(`${queen.url}/v1/gpus?free=true`)).body?.length > 0, 15_000, "the hive's GPUs at the queen");
		// The hive's state dir as the default one, where `hive …` commands find its API token.
		env = {
			...process.env,
			PATH: `${ROOT}node_modules/.bin:${process.env.PATH}`,
			APIARY_QUEEN: queen.url,
			APIARY_HIVE: hive.url,
			APIARY_STATE_DIR: join(dir, "hive"),
		};
	});
	afterAll(async () => {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("README: hive spawn, hive ps and hive logs -f print what the example shows", () => {
		const [block] = blocks(doc("README.md"), "console");
		const steps = consoleSteps(block!);
		expect(steps.map((s) => s.cmd.split(" ").slice(0, 3).join(" "))).toEqual(["npx hive spawn", "npx hive ps", "npx hive logs"]);
		let id = "";
		for (const step of steps) {
			const shownId = /w-[0-9a-f]{8}/.exec(steps[0]!.out[0]!)![0];
			const r = sh(id ? step.cmd.replaceAll(shownId, id) : step.cmd);
			expect(r.status, `${step.cmd}\n${r.stderr}`).toBe(0);
			const lines = r.stdout.trimEnd().split("\n");
			if (!id) {
				id = lines[0]!;
				expect(id).toMatch(/^w-[0-9a-f]{8}$/);
				continue;
			}
			// Each line shown is printed, in its shape (the figures are this machine's).
			for (const shown of step.out)
				expect(
					lines.some((l) => sameShape(shown.replaceAll(shownId, id), l)),
					`${step.cmd}: ${shown}\ngot:\n${r.stdout}`,
				).toBe(true);
		}
	});

	it("README: the queen's query commands and its curl examples work as written", () => {
		const block = blocks(doc("README.md"), "sh").find((b) => b.includes("npx queen start"))!;
		const lines = block
			.replace(/\\\n\s*/g, "")
			.split("\n")
			.map((l) => l.replace(/\s+#.*$/, "").trim())
			// What runs as written: no synopsis brackets, no daemons (started above), nothing that needs a host's own files.
			.filter((l) => /^(npx queen (gpus|hives|workers|advise)|curl)\b/.test(l) && !l.includes("["));
		expect(lines.length).toBeGreaterThanOrEqual(4);
		for (const full of lines) {
			const r = sh(local(full.startsWith("curl -N") ? `timeout 2 ${full}; true` : full));
			expect(r.status, `${full}\n${r.stderr}`).toBe(0);
			if (full.includes("/v1/claims")) expect(JSON.parse(r.stdout)).toMatchObject({ holder: "ci", gpus: expect.any(Array) });
			else if (full.startsWith("curl -N")) expect(r.stdout).toMatch(/^event: snapshot$/m);
			else expect(r.stdout.length).toBeGreaterThan(0);
		}
	});

	it("operations.md: backup, then a queen started on the copy has the fleet", async () => {
		const block = blocks(doc("docs/operations.md"), "sh").find((b) => b.includes("npx queen backup"))!;
		const [backup, restore] = block.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim());
		expect(backup).toMatch(/^npx queen backup /);
		expect(restore).toMatch(/^npx queen start --db /);
		const b = sh(local(backup!));
		expect(b.status, b.stderr).toBe(0);
		// The restored queen on a free port (its default 7070 may be taken here).
		// A process group of its own: npx runs the queen as its child, and both must go.
		const child = spawn("bash", ["-c", `exec ${local(restore!)} --listen 127.0.0.1:0`], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
		let out = "";
		child.stdout.on("data", (d) => {
			out += d;
		});
		try {
			await until(() => /hives known: [1-9]/.test(out), 20_000, `the restored queen starting: ${out}`);
		} finally {
			const exited = new Promise((r) => child.once("exit", r));
			process.kill(-child.pid!, "SIGTERM");
			await exited;
			// The queen itself (npx's child) ends on the same signal; wait until the group is empty.
			await until(
				() => {
					try {
						process.kill(-child.pid!, 0);
						return false;
					} catch {
						return true;
					}
				},
				10_000,
				"the restored queen gone",
			);
		}
	});
});
