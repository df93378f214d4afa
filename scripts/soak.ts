import { parseArgs } from "node:util";
import { soak } from "@apiary/test-support/soak";

// `npm run soak -- --minutes 30 [--seed N]`: the fleet under random network faults (issue #21), then
// the invariant check; prints the report and exits 1 if any promise was broken (as root: namespaces).
const HELP = `Usage: npm run soak -- [--minutes N] [--seed N] [--json]

  --minutes N   how long to inject faults and load (default 30)
  --seed N      replay a run's random choices (default: from the clock; printed)
  --json        the report as JSON on stdout
  --logs DIR    keep every queen's and hive's output there (one file per start)`;

const { values: v } = parseArgs({
	options: { minutes: { type: "string" }, seed: { type: "string" }, json: { type: "boolean" }, logs: { type: "string" }, help: { type: "boolean" } },
	strict: true,
});
if (v.help) {
	console.log(HELP);
	process.exit(0);
}
const minutes = Number(v.minutes ?? 30);
const seed = Number(v.seed ?? Date.now() % 1_000_000);
if (!(minutes > 0) || !Number.isInteger(seed)) {
	console.error("soak: --minutes must be a positive number and --seed a whole number");
	process.exit(2);
}
console.error(`soak: ${minutes} min, seed ${seed} (--seed ${seed} replays it)`);
const report = await soak({ seconds: minutes * 60, seed, log: (s) => console.error(`soak: ${s}`), logDir: v.logs });
if (v.json) console.log(JSON.stringify(report, null, 2));
else {
	console.log(
		`soak: seed ${report.seed}, ${minutes} min: operations ${JSON.stringify(report.ops)}, faults ${JSON.stringify(report.faults)}, ${report.workers} workers known`,
	);
	console.log(report.violations.length === 0 ? "soak: no invariant broken" : `soak: ${report.violations.length} broken:\n  ${report.violations.join("\n  ")}`);
}
process.exit(report.violations.length === 0 ? 0 : 1);
