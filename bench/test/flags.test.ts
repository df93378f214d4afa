import { execFileSync, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { selectSections } from "../run.ts";

describe("npm run bench flags", () => {
	it("--only takes a list with or without =", () => {
		expect(selectSections(["--only", "tick"]).only).toEqual(["tick"]);
		expect(selectSections(["--only=tick,cli"]).only).toEqual(["tick", "cli"]);
		expect(selectSections(["--quick"])).toEqual({ quick: true, gate: false, only: null, help: false });
		expect(selectSections(["--gate", "--only", "cli"])).toEqual({ quick: false, gate: true, only: ["cli"], help: false });
		expect(() => selectSections(["--gate", "--quick"])).toThrow(/--quick and --gate are two sizes/);
	});
	it("an unknown section or flag is an error naming it, exit 2, nothing run", () => {
		expect(() => selectSections(["--only", "tik"])).toThrow(
			/--only: unknown section "tik" \(known: tick, heartbeat, spawn, ingest, fanout, gpu, memory, cli, advise, placement, runs, waiters, tls, pg, failover, overload, fleet, simulator\)/,
		);
		expect(() => selectSections(["--bogus"])).toThrow(/bench: Unknown option '--bogus'/);
		const root = new URL("../../", import.meta.url).pathname;
		const r = spawnSync(process.execPath, ["bench/run.ts", "--only", "tik"], { cwd: root, encoding: "utf8" });
		expect(r.status).toBe(2);
		expect(r.stderr).toMatch(/unknown section "tik"/);
		expect(r.stdout).toBe("");
		expect(execFileSync(process.execPath, ["bench/run.ts", "--help"], { cwd: root, encoding: "utf8" })).toMatch(/--only LIST/);
	});
});
