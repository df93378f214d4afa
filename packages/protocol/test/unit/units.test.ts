import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { checkId, formatBytes, isValidId, parseDuration, parseSize } from "../../src/index.ts";
import { shellJoin } from "../../src/units.ts";

describe("durations", () => {
	it("take units; a bare number is seconds", () => {
		expect(parseDuration("500ms")).toBe(500);
		expect(parseDuration("2s")).toBe(2000);
		expect(parseDuration("1.5s")).toBe(1500);
		expect(parseDuration("5m")).toBe(300_000);
		expect(parseDuration("1h")).toBe(3_600_000);
		expect(parseDuration("7d")).toBe(7 * 86_400_000);
		expect(parseDuration("90")).toBe(90_000);
	});
	it("reject what is not one", () => {
		expect(() => parseDuration("soon")).toThrow(/not a duration: "soon"/);
		expect(() => parseDuration("-1s")).toThrow();
		expect(() => parseDuration("")).toThrow();
	});
});

describe("sizes", () => {
	it("are binary", () => {
		expect(parseSize("512M")).toBe(512 * 1024 * 1024);
		expect(parseSize("1G")).toBe(1024 ** 3);
		expect(parseSize("64k")).toBe(65536);
		expect(parseSize("1GiB")).toBe(1024 ** 3);
		expect(parseSize("4096")).toBe(4096);
	});
	it("reject what is not one", () => {
		expect(() => parseSize("lots")).toThrow(/not a size: "lots"/);
		expect(() => parseSize("12X")).toThrow();
	});
	it("format for people", () => {
		expect(formatBytes(64 * 1024 * 1024)).toBe("64.0M");
		expect(formatBytes(null)).toBe("-");
	});
});

describe("commands shown to people", () => {
	it("quote what a shell would split or expand, so what is shown can be typed back", () => {
		expect(shellJoin(["sh", "-c", "echo a b; exit 3"])).toBe("sh -c 'echo a b; exit 3'");
		expect(shellJoin(["echo", "it's", "$HOME", "", "plain/path.txt"])).toBe("echo 'it'\\''s' '$HOME' '' plain/path.txt");
		const r = spawnSync("sh", ["-c", `for a in ${shellJoin(["x y", "it's", "$HOME"])}; do echo "[$a]"; done`], { encoding: "utf8" });
		expect(r.stdout).toBe("[x y]\n[it's]\n[$HOME]\n");
	});
});

describe("ids", () => {
	it("are safe as cgroup and file names", () => {
		for (const ok of ["w1", "ci-shard.12_a", "0abc"]) expect(isValidId(ok)).toBe(true);
		for (const bad of ["../x", "a/b", "..", "a..b", ".hidden", "-x", "UPPER", "", "x".repeat(64)]) expect(isValidId(bad)).toBe(false);
		expect(() => checkId("../x", "--id")).toThrow(/--id "..\/x" is not valid/);
	});
});
