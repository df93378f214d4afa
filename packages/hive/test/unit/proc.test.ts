import { describe, expect, it } from "vitest";
import { parseProcCgroup, parseProcIo, parseProcStat } from "../../src/proc.ts";
import { resolveLimits } from "@apiary/protocol";

describe("procfs parsers", () => {
	it("/proc/<pid>/stat survives a comm with spaces and parentheses", () => {
		const text =
			"4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 75 0 0 20 0 1 0 98765 12345678 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
		const s = parseProcStat(text);
		expect(s).toMatchObject({
			pid: 4242,
			comm: "my (odd) prog",
			state: "S",
			ppid: 1,
			pgrp: 4242,
			utimeTicks: 250,
			stimeTicks: 75,
			startTicks: 98765,
			rssPages: 2048,
		});
	});

	it("/proc/<pid>/io", () => {
		const io = parseProcIo("rchar: 1000\nwchar: 2000\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 20971520\ncancelled_write_bytes: 0\n");
		expect(io).toEqual({ readBytes: 4096, writeBytes: 20971520, syscr: 3, syscw: 4 });
	});

	it("/proc/<pid>/cgroup on a hybrid host", () => {
		const c = parseProcCgroup("4:memory:/apiary/workers/w1\n1:cpu,cpuacct:/apiary/workers/w1\n0::/apiary/workers/w1\n");
		expect(c[1]).toEqual({ id: "1", controllers: ["cpu", "cpuacct"], path: "/apiary/workers/w1" });
		expect(c[2]!.controllers).toEqual([]);
	});
});

describe("profiles", () => {
	it("give the documented defaults, and explicit flags win", () => {
		expect(resolveLimits("fast_feedback", {})).toEqual({ memoryBytes: 512 * 2 ** 20, cpu: 0.5, pids: null, timeoutMs: 120_000 });
		expect(resolveLimits("e2e_background", { cpu: 2, timeoutMs: null })).toEqual({ memoryBytes: 4 * 2 ** 30, cpu: 2, pids: null, timeoutMs: null });
		expect(resolveLimits(null, { memoryBytes: 1 })).toEqual({ memoryBytes: 1, cpu: null, pids: null, timeoutMs: null });
	});
});
