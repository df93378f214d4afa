import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, tempDir } from "@apiary/test-support/procs";
import { afterAll, describe, expect, it } from "vitest";

// The performance gate (issue #24): every budgeted figure within its budget,
// and a budget tighter than reality fails, naming the figure.

const ROOT = new URL("../../", import.meta.url).pathname;
const gate = (args: string[]) => spawnSync(process.execPath, [join(ROOT, "bench/gate.ts"), ...args], { encoding: "utf8", timeout: 230_000 });

describe("the perf gate", () => {
	const dir = tempDir("perf");
	afterAll(() => removeDir(dir));

	it("every figure in bench/budgets.json is within its budget (a failure is measured again once)", () => {
		const r = gate([]);
		expect(r.status, `${r.stdout.slice(-3000)}\n${r.stderr}`).toBe(0);
		expect(r.stdout).toMatch(/perf gate: \d+ figures within their budgets/);
	});

	it("a budget tighter than reality fails after measuring again, naming the figure, its budget, what was measured and its floor", () => {
		const real = JSON.parse(readFileSync(join(ROOT, "bench/budgets.json"), "utf8")).budgets.find(
			(b: { figure: string }) => b.figure === "heartbeat.bytesPerWorker",
		);
		const tight = join(dir, "tight.json");
		writeFileSync(tight, JSON.stringify({ budgets: [{ ...real, budget: 100, tolerance: 0, floor: "heartbeat.bytes" }] }));
		const r = gate(["--budgets", tight]);
		expect(r.status).toBe(1);
		expect(r.stdout).toMatch(/measuring heartbeat again/);
		expect(r.stderr).toMatch(/heartbeat\.bytesPerWorker = \d+, over its budget 100 \(tolerance 0 %: at most 100\); floor heartbeat\.bytes = \d+/);
	});
});
