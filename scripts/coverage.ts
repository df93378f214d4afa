// npm run coverage: the unit, integration and fault tiers with coverage of
// every Node process they run, merged: the tests' own processes through
// vitest's v8 provider (it maps what vitest transformed back to the source),
// and every process a test starts (the daemons, their spawn helpers, the
// CLIs) through NODE_V8_COVERAGE, read by c8 (Node's type stripping keeps
// every position, so the .ts files on disk are the map). Writes a text
// summary per package, coverage/lcov.info and coverage/html/, and fails when
// a package falls below its floor in coverage-floors.json.
//
//   node scripts/coverage.ts [--report-only] [--tiers unit,integration,fault]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import libCoverage from "istanbul-lib-coverage";
import libReport from "istanbul-lib-report";
import reports from "istanbul-reports";

const ROOT = new URL("../", import.meta.url).pathname;
const OUT = join(ROOT, "coverage");
const RAW = join(OUT, "v8");
const METRICS = ["lines", "branches", "functions"] as const;
type Floors = Record<string, Record<(typeof METRICS)[number], number>>;

/** A tool's script run by this Node (24), with node_modules/.bin first on the PATH as npm scripts have it. */
function run(script: string, args: string[], env: NodeJS.ProcessEnv = {}): number {
	const PATH = `${join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? ""}`;
	const r = spawnSync(process.execPath, [join(ROOT, script), ...args], { cwd: ROOT, stdio: "inherit", env: { ...process.env, PATH, ...env } });
	return r.status ?? 1;
}

/** The coverage map of one tier's tests' own processes, and of all the processes they started. */
function collect(tiers: string[]): number {
	rmSync(OUT, { recursive: true, force: true });
	mkdirSync(RAW, { recursive: true });
	let failed = 0;
	for (const tier of tiers) {
		const code = run(
			"node_modules/vitest/vitest.mjs",
			[
				"run",
				"--project",
				tier,
				"--coverage.enabled",
				"--coverage.provider=v8",
				"--coverage.reporter=json",
				// A failed test must not also drop the tier's coverage (vitest writes none on failure by default):
				// CI once read a drain test's failure as the hive's coverage falling 7 points.
				"--coverage.reportOnFailure",
				`--coverage.reportsDirectory=${join(OUT, `tier-${tier}`)}`,
				"--coverage.include=packages/*/src/**",
				"--coverage.exclude=packages/test-support/**",
				// The dashboard's page runs in a browser, where Node's coverage cannot see it (the browser tier tests it).
				"--coverage.exclude=packages/queen/src/dashboard/**",
			],
			{ APIARY_COVERAGE_DIR: RAW },
		);
		if (code !== 0) failed = code;
	}
	// The started processes' raw V8 coverage, as the same JSON.
	const c8 = run("node_modules/c8/bin/c8.js", [
		"report",
		"--temp-directory",
		RAW,
		"--reporter=json",
		"--report-dir",
		join(OUT, "processes"),
		"--include",
		"packages/*/src/**",
		"--exclude",
		"packages/test-support/**",
		"--exclude",
		"packages/queen/src/dashboard/**",
		"--exclude-node-modules",
	]);
	return failed || c8;
}

function merged(): libCoverage.CoverageMap {
	const map = libCoverage.createCoverageMap({});
	for (const dir of ["processes", ...["unit", "integration", "fault"].map((t) => `tier-${t}`)]) {
		const f = join(OUT, dir, "coverage-final.json");
		if (existsSync(f)) map.merge(JSON.parse(readFileSync(f, "utf8")));
	}
	return map;
}

/** Each package's totals: lines, branches and functions covered, in per cent. */
export function byPackage(map: libCoverage.CoverageMap): Record<string, libCoverage.CoverageSummary> {
	const out: Record<string, libCoverage.CoverageSummary> = {};
	for (const file of map.files()) {
		const m = /packages\/([^/]+)\/src\//.exec(file);
		// The tests' own helpers are not what is measured.
		if (!m || m[1] === "test-support") continue;
		out[m[1]!] ??= libCoverage.createCoverageSummary();
		out[m[1]!]!.merge(map.fileCoverageFor(file).toSummary());
	}
	return out;
}

/** The floors a package falls below, said in one line each. */
export function belowFloors(summary: Record<string, { [k in (typeof METRICS)[number]]: { pct: number } }>, floors: Floors): string[] {
	const below: string[] = [];
	for (const [pkg, floor] of Object.entries(floors))
		for (const k of METRICS) {
			const pct = summary[pkg]?.[k].pct ?? 0;
			if (pct < floor[k]) below.push(`packages/${pkg}: ${k} ${pct.toFixed(1)} %, below its floor ${floor[k]} %`);
		}
	return below;
}

if (import.meta.main) {
	const args = process.argv.slice(2);
	const tiersAt = args.indexOf("--tiers");
	const tiers = tiersAt >= 0 ? args[tiersAt + 1]!.split(",") : ["unit", "integration", "fault"];
	const testsFailed = args.includes("--report-only") ? 0 : collect(tiers);
	const map = merged();
	const context = libReport.createContext({ dir: OUT, coverageMap: map, defaultSummarizer: "nested" });
	for (const r of ["lcovonly", "html", "json-summary"] as const)
		reports.create(r, r === "html" ? { subdir: "html" } : r === "lcovonly" ? { file: "lcov.info" } : {}).execute(context);
	const summary = byPackage(map);
	const rows = Object.entries(summary)
		.sort(([a], [b]) => a.localeCompare(b))
		.map(([pkg, s]) => `${`packages/${pkg}`.padEnd(20)} ${METRICS.map((k) => `${k} ${s[k].pct.toFixed(1).padStart(5)} %`).join("   ")}`);
	process.stdout.write(`\ncoverage (tests and every process they started; coverage/lcov.info, coverage/html/index.html):\n${rows.join("\n")}\n`);
	writeFileSync(join(OUT, "by-package.json"), `${JSON.stringify(Object.fromEntries(Object.entries(summary).map(([k, s]) => [k, s.toJSON()])), null, 2)}\n`);
	const floors = JSON.parse(readFileSync(join(ROOT, "coverage-floors.json"), "utf8")).floors as Floors;
	const below = belowFloors(summary as never, floors);
	if (below.length > 0) process.stderr.write(`\ncoverage fell below its floors (coverage-floors.json):\n${below.map((l) => `  ${l}`).join("\n")}\n`);
	process.exit(testsFailed || (below.length > 0 ? 1 : 0));
}
