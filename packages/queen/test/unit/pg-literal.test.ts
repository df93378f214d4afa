import pg from "pg";
import { describe, expect, it } from "vitest";
import { inline, quoteLiteral } from "../../src/store/pg/store.ts";

// The queen writes its statements with literals in them (one round trip per
// batch); its own quoting must say exactly what pg's escapeLiteral says.
describe("literals in the queen's PostgreSQL statements", () => {
	it("quote as pg.escapeLiteral does: quotes and backslashes doubled, E'' with a backslash, hostile text one string", () => {
		const cases = ["", "plain", "it's", "''", "\\", "a\\'b", "'); DROP TABLE hives; --", '{"a":"b\\"c","d":"\\\\n"}', "ünïcødé ✓ 'q'", "\n\t\r\0"];
		for (const s of cases) expect(quoteLiteral(s)).toBe(pg.escapeLiteral(s));
		// And text drawn from the characters that matter, at random.
		const chars = ["'", "\\", "a", '"', " ", "E", "é", "\n", "$1"];
		for (let i = 0; i < 2000; i++) {
			const s = Array.from({ length: 1 + (i % 23) }, () => chars[Math.floor(Math.random() * chars.length)]).join("");
			expect(quoteLiteral(s)).toBe(pg.escapeLiteral(s));
		}
	});

	it("inline writes each parameter in its place, and refuses a number that is not finite", () => {
		expect(inline({ sql: "UPDATE t SET a = $1, b = $2, c = $3, d = $10 WHERE e = $4", params: ["x'y", 2, null, true, 0, 0, 0, 0, 0, "z"] })).toBe(
			"UPDATE t SET a = 'x''y', b = 2, c = NULL, d = 'z' WHERE e = TRUE",
		);
		expect(() => inline({ sql: "SELECT $1", params: [Number.NaN] })).toThrow(/not a finite number/);
	});
});
