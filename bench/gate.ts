import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseFlags, UsageError, exitCodeFor } from "@apiary/kit/cli";

// The performance gate (npm test's perf tier): the bench sections whose
// figures are ratios to a floor measured in the same run, or exact sizes, run
// at their --gate sizes and checked against bench/budgets.json. Absolute
// times never gate: on these noisy 2-core machines only a figure over its
// own floor says something about the code. A figure over budget is measured
// again once (its section alone) before it fails; the failure names the
// figure, its budget, what was measured and the floor beside it.

export interface Budget {
	/** A path into the bench's results, e.g. "tick_100.apiaryOverFloorPairedTotals". */
	figure: string;
	/** The bench section that measures it (npm run bench -- --only SECTION). */
	section: string;
	/** "max": the figure may not be above the budget; "min": not below it (a ratio where higher is better). */
	limit: "max" | "min";
	budget: number;
	/** Fraction of the budget a measurement may stray past it (the spread seen over repeated runs). */
	tolerance: number;
	why: string;
	/** The floor measured beside the figure, named in a failure. */
	floor?: string;
}

const at = (results: Record<string, unknown>, path: string): unknown =>
	path.split(".").reduce<unknown>((o, k) => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), results);

/** The budgets a run's results break, each said in one line. */
export function check(budgets: Budget[], results: Record<string, unknown>): { budget: Budget; line: string }[] {
	const broken: { budget: Budget; line: string }[] = [];
	for (const b of budgets) {
		const v = at(results, b.figure);
		if (typeof v !== "number" || !Number.isFinite(v)) {
			broken.push({ budget: b, line: `${b.figure}: not measured (section ${b.section} recorded no number there)` });
			continue;
		}
		const bound = b.limit === "max" ? b.budget * (1 + b.tolerance) : b.budget * (1 - b.tolerance);
		const ok = b.limit === "max" ? v <= bound : v >= bound;
		if (ok) continue;
		const floor = b.floor ? `; floor ${b.floor} = ${JSON.stringify(at(results, b.floor))}` : "";
		broken.push({
			budget: b,
			line: `${b.figure} = ${v}, ${b.limit === "max" ? "over" : "under"} its budget ${b.budget} (tolerance ${Math.round(b.tolerance * 100)} %: ${b.limit === "max" ? "at most" : "at least"} ${Math.round(bound * 1000) / 1000})${floor}`,
		});
	}
	return broken;
}

export function loadBudgets(file: string): Budget[] {
	const list = JSON.parse(readFileSync(file, "utf8")).budgets as Budget[];
	if (!Array.isArray(list) || list.length === 0) throw new UsageError(`perf gate: ${file} has no budgets`);
	for (const b of list)
		if (typeof b.figure !== "string" || typeof b.section !== "string" || !["max", "min"].includes(b.limit) || !(b.budget > 0) || !(b.tolerance >= 0))
			throw new UsageError(`perf gate: ${file}: a budget needs figure, section, limit (max|min), budget > 0 and tolerance >= 0: ${JSON.stringify(b)}`);
	return list;
}

/** Runs these sections at their gate sizes; their results. */
function measure(sections: string[]): Record<string, unknown> {
	const run = spawnSync(process.execPath, [new URL("./run.ts", import.meta.url).pathname, "--gate", "--only", sections.join(",")], {
		stdio: ["ignore", "inherit", "inherit"],
	});
	if (run.status !== 0) throw new Error(`npm run bench -- --gate --only ${sections.join(",")} exited ${run.status}`);
	return JSON.parse(readFileSync(new URL("./results/gate.json", import.meta.url), "utf8")).results;
}

async function main(argv: string[]): Promise<number> {
	const { values: v } = parseFlags("perf gate", argv, { budgets: { type: "string" } });
	const budgets = loadBudgets(v.budgets ?? new URL("./budgets.json", import.meta.url).pathname);
	const sections = [...new Set(budgets.map((b) => b.section))];
	let broken = check(budgets, measure(sections));
	if (broken.length > 0) {
		// Once more, only what failed: one slow moment on a shared machine is not a regression.
		const again = [...new Set(broken.map((x) => x.budget.section))];
		process.stdout.write(`\nperf gate: over budget, measuring ${again.join(", ")} again:\n${broken.map((x) => `  ${x.line}`).join("\n")}\n`);
		broken = check(
			broken.map((x) => x.budget),
			measure(again),
		);
	}
	if (broken.length === 0) {
		process.stdout.write(`\nperf gate: ${budgets.length} figures within their budgets\n`);
		return 0;
	}
	process.stderr.write(
		`\nperf gate: ${broken.length} over budget, measured twice:\n${broken.map((x) => `  ${x.line}\n    why this budget: ${x.budget.why}`).join("\n")}\n`,
	);
	return 1;
}

if (import.meta.main) {
	let code: number;
	try {
		code = await main(process.argv.slice(2));
	} catch (e) {
		code = exitCodeFor("perf gate", e, (s) => process.stderr.write(s));
	}
	process.exit(code);
}
