import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// The commands the docs show are the commands the CLIs take: every
// `npx hive …` / `npx queen …` line in README.md, docs/ and the systemd units
// names a real subcommand and only flags that subcommand's --help lists. (What
// the commands do is exercised by the integration tests.)
const ROOT = new URL("../../", import.meta.url).pathname;
const BIN: Record<string, string> = { hive: `${ROOT}packages/hive/bin/hive.js`, queen: `${ROOT}packages/queen/bin/queen.js` };

function docCommands(): { file: string; tool: string; sub: string; flags: string[]; line: string }[] {
	const files = [
		"README.md",
		...readdirSync(`${ROOT}docs`)
			.filter((f) => f.endsWith(".md"))
			.map((f) => `docs/${f}`),
		...readdirSync(`${ROOT}deploy/systemd`).map((f) => `deploy/systemd/${f}`),
	];
	const out: { file: string; tool: string; sub: string; flags: string[]; line: string }[] = [];
	for (const file of files) {
		const text = readFileSync(`${ROOT}${file}`, "utf8").replace(/\\\n\s*/g, " ");
		const blocks = file.endsWith(".service") ? [text] : [...text.matchAll(/```(?:sh|console)?\n([\s\S]*?)```/g)].map((m) => m[1]!);
		for (const block of blocks) {
			for (const raw of block.split("\n")) {
				const m = /(?:npx |\/node_modules\/\.bin\/)(hive|queen) ([a-z]+)(.*)$/.exec(raw.replace(/#.*$/, ""));
				if (!m) continue;
				const flags = [...m[3]!.matchAll(/(?:^|\s|\[)(--[a-z-]+)/g)].map((f) => f[1]!);
				out.push({ file, tool: m[1]!, sub: m[2]!, flags, line: raw.trim() });
			}
		}
	}
	return out;
}

describe("the docs", () => {
	const cmds = docCommands();
	const help = new Map<string, string>();
	const helpOf = (tool: string, sub: string) => {
		const k = `${tool} ${sub}`;
		if (!help.has(k)) help.set(k, execFileSync(process.execPath, [BIN[tool]!, sub, "--help"], { encoding: "utf8" }));
		return help.get(k)!;
	};

	it("show many commands (the check is not vacuous)", () => {
		expect(cmds.length).toBeGreaterThan(20);
		expect(new Set(cmds.map((c) => `${c.tool} ${c.sub}`))).toEqual(
			new Set([
				"hive start",
				"hive spawn",
				"hive ps",
				"hive kill",
				"hive logs",
				"queen start",
				"queen tail",
				"queen gpus",
				"queen hives",
				"queen workers",
				"queen migrate",
				"queen backup",
				"queen advise",
				"queen run",
				"queen kill",
				"queen logs",
				"queen token",
				"queen audit",
				"queen certs",
				"queen drain",
				"queen gpu",
				"queen runs",
			]),
		);
	});

	it("use only real subcommands and flags", () => {
		for (const c of cmds) {
			const h = helpOf(c.tool, c.sub);
			for (const f of c.flags) expect(h, `${c.file}: ${c.line}`).toContain(f);
		}
	});

	it("name npm scripts that exist", () => {
		const scripts = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")).scripts;
		const mentioned = new Set<string>();
		for (const f of ["README.md", "docs/testing.md"])
			for (const m of readFileSync(`${ROOT}${f}`, "utf8").matchAll(/npm (?:run )?(start|test(?::[a-z]+)?|bench)\b/g)) mentioned.add(m[1]!);
		for (const s of mentioned) expect(scripts, s).toHaveProperty(s);
		expect(mentioned.size).toBeGreaterThan(3);
	});

	// systemd-analyze ships with systemd (present on these Debian machines; no running systemd needed).
	it.skipIf(!existsSync("/usr/bin/systemd-analyze"))("systemd units pass systemd-analyze verify", () => {
		const dir = mkdtempSync(join(tmpdir(), "apiary-test-units-"));
		try {
			const files = readdirSync(`${ROOT}deploy/systemd`).map((f) => {
				writeFileSync(join(dir, f), readFileSync(`${ROOT}deploy/systemd/${f}`, "utf8").replaceAll("/opt/apiary", ROOT.replace(/\/$/, "")));
				return join(dir, f);
			});
			const r = spawnSync("systemd-analyze", ["verify", ...files], { encoding: "utf8" });
			expect(r.status).toBe(0);
			// DelegateSubgroup needs systemd 254; older ones ignore it and the hive moves itself (docs/operations.md).
			const complaints = r.stderr.split("\n").filter((l) => l.trim() && !l.includes("'DelegateSubgroup'"));
			expect(complaints).toEqual([]);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});
