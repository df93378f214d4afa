import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { enforceBudget, lastLinesOf, rotateIfOver } from "../../src/log-cap.ts";

const dir = mkdtempSync(join(tmpdir(), "apiary-logcap-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("log cap", () => {
	it("rotates past half the cap: the newest half kept in .log.1, the log truncated, the rest counted as dropped", () => {
		const p = join(dir, "w.log");
		writeFileSync(p, "a".repeat(600) + "b".repeat(400));
		expect(rotateIfOver(p, 2000)).toBeNull(); // 1000 ≤ half of 2000
		writeFileSync(p, "a".repeat(700) + "b".repeat(500));
		expect(rotateIfOver(p, 1000)).toEqual({ dropped: 700 });
		expect(readFileSync(`${p}.1`, "latin1")).toBe("b".repeat(500));
		expect(readFileSync(p, "latin1")).toBe("");
		writeFileSync(p, "c".repeat(600));
		expect(rotateIfOver(p, 1000)).toEqual({ dropped: 500 + 100 }); // the old .log.1 and the oldest 100 of the log
		expect(readFileSync(`${p}.1`, "latin1")).toBe("c".repeat(500));
	});
	it("the budget removes exited workers' logs, oldest first, never a running one's", () => {
		const put = (name: string, bytes: number, ageS: number) => {
			writeFileSync(join(dir, name), "x".repeat(bytes));
			const t = Date.now() / 1000 - ageS;
			utimesSync(join(dir, name), t, t);
		};
		rmSync(join(dir, "w.log"), { force: true });
		rmSync(join(dir, "w.log.1"), { force: true });
		put("old.log", 400, 300);
		put("mid.log", 400, 200);
		put("live.log", 400, 400);
		expect(enforceBudget(dir, 900, (id) => id === "live")).toEqual(["old"]);
		expect(existsSync(join(dir, "live.log"))).toBe(true);
		expect(existsSync(join(dir, "mid.log"))).toBe(true);
	});
	it("the last n lines, a final newline not counted", () => {
		expect(lastLinesOf(Buffer.from("a\nb\nc\n"), 2).toString()).toBe("b\nc\n");
		expect(lastLinesOf(Buffer.from("a\nb\nc"), 2).toString()).toBe("b\nc");
		expect(lastLinesOf(Buffer.from("a\n"), 5).toString()).toBe("a\n");
		expect(lastLinesOf(Buffer.from("a\n"), 0).toString()).toBe("");
	});
});
