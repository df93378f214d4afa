import { execFile } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

// The dependency rule is a biome lint rule (biome.json overrides); this
// proves it bites by linting probe files placed where a wrong import would be.
const ROOT = new URL("../../../../", import.meta.url).pathname;
const run = promisify(execFile);
const probes: string[] = [];
afterEach(() => {
	for (const p of probes.splice(0)) rmSync(p, { force: true });
});

async function lint(rel: string, source: string): Promise<string> {
	const path = `${ROOT}${rel}`;
	probes.push(path);
	writeFileSync(path, source);
	try {
		await run(`${ROOT}node_modules/.bin/biome`, ["lint", "--max-diagnostics=5", rel], { cwd: ROOT });
		return "";
	} catch (err) {
		return `${(err as { stdout: string }).stdout}${(err as { stderr: string }).stderr}`;
	}
}

describe("package layout", () => {
	it("fails lint when the queen imports the hive", async () => {
		const out = await lint("packages/queen/src/zz-probe-layout.ts", 'import { main } from "@apiary/hive";\nexport { main };\n');
		expect(out).toMatch(/noRestrictedImports/);
		expect(out).toMatch(/the queen never imports the hive/);
	});
	it("fails lint when src/ imports test code", async () => {
		const out = await lint("packages/hive/src/zz-probe-layout.ts", 'import { until } from "../../../tests/util.ts";\nexport { until };\n');
		expect(out).toMatch(/src\/ never imports test code/);
	});
	it("passes the same files importing kit", async () => {
		expect(await lint("packages/queen/src/zz-probe-layout.ts", 'import { call } from "@apiary/kit/client";\nexport { call };\n')).toBe("");
	});
});
