import type { QueenEvent } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { formatEvent, table } from "../../src/format.ts";

const exited: QueenEvent = {
	id: 7,
	type: "worker.exited",
	at: "2026-11-21T16:07:27.854Z",
	hiveId: "h1",
	workerId: "t1",
	data: { exit: { reason: "oom", exitCode: null, signal: "SIGKILL", oomKilled: true, durationMs: 1022 } },
};

describe("queen tail's lines", () => {
	it("are aligned columns a person can read", () => {
		expect(formatEvent(exited, false)).toBe("16:07:27.854  worker.exited    h1            t1              oom SIGKILL OOM-killed after 1.0s\n");
	});
	it("are coloured on a terminal and plain otherwise", () => {
		expect(formatEvent(exited, true)).toContain("\x1b[36mworker.exited  \x1b[0m");
		expect(formatEvent(exited, false)).not.toContain("\x1b[");
	});
	it("tables pad every column but the last", () => {
		expect(
			table([
				["A", "BB", "C"],
				["aaa", "b", "cc"],
			]),
		).toBe("A    BB  C\naaa  b   cc\n");
	});
});
