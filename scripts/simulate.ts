import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { simulate } from "@apiary/test-support/fleet-sim";

// `npm run simulate -- --hives N --queen URL[,URL…]`: a simulated fleet against real queens (issue #23).
const HELP = `Usage: npm run simulate -- --hives N --queen URL[,URL…] [options]

Many hives in one process, each speaking the real socket protocol: hello, heartbeats at the
interval its queen tells it (its own tick otherwise), worker spawns and exits at a churn rate,
answers to the queen's spawn, stop, logs and gpu-clear commands. Prints what it saw.

  --hives N          simulated hives (ids PREFIX0…), spread over the queens
  --workers M        running workers per hive (default 50)
  --queen URLS       queen base URLs, comma-separated (hive i dials the i-th modulo, then the next)
  --seconds S        how long to run once every hive has joined (default 30)
  --churn R          worker exits per second across the fleet, each replaced at once (default 0)
  --gpus G           GPUs per hive (default 2)
  --tick-ms T        the hives' own sampling interval (default 1000)
  --prefix P         hive id prefix (default sim-)
  --token-file F     a token a hive may connect with (hive or enrol role)
  --ca FILE          the CA a wss:// queen's certificate is checked against
  --json             the report as JSON`;

const bad = (msg: string): never => {
	console.error(`simulate: ${msg}\n\n${HELP}`);
	process.exit(2);
};
const args = () =>
	parseArgs({
		options: {
			hives: { type: "string" },
			workers: { type: "string" },
			queen: { type: "string" },
			seconds: { type: "string" },
			churn: { type: "string" },
			gpus: { type: "string" },
			"tick-ms": { type: "string" },
			prefix: { type: "string" },
			"token-file": { type: "string" },
			ca: { type: "string" },
			json: { type: "boolean" },
			help: { type: "boolean" },
		},
		strict: true,
	});
let v: ReturnType<typeof args>["values"];
try {
	v = args().values;
} catch (err) {
	// An unknown flag, a value missing (or one like -1 taken for a flag: write --churn=-1).
	v = bad((err as Error).message);
}
if (v.help) {
	console.log(HELP);
	process.exit(0);
}
const num = (name: string, s: string | undefined, dflt: number, min: number): number => {
	const n = s === undefined ? dflt : Number(s);
	if (!Number.isFinite(n) || n < min) bad(`--${name} must be a number ≥ ${min}, not ${s}`);
	return n;
};
const hives = Number.parseInt(v.hives ?? "", 10);
if (!(hives >= 1) || String(hives) !== v.hives) bad("--hives N (a whole number ≥ 1) is required");
if (!v.queen) bad("--queen URL[,URL…] is required");
const queens = v.queen!.split(",").filter(Boolean);
for (const q of queens) if (!/^https?:\/\/[^/]+\/?$/.test(q)) bad(`--queen: ${q} is not a queen's base URL (http://HOST:PORT)`);
const read = (f: string | undefined) => {
	if (f === undefined) return undefined;
	try {
		return readFileSync(f);
	} catch (err) {
		return bad(`cannot read ${f}: ${(err as Error).message}`);
	}
};
const report = await simulate(
	{
		queens: queens.map((q) => q.replace(/\/$/, "")),
		hives,
		workers: Math.floor(num("workers", v.workers, 50, 0)),
		seconds: num("seconds", v.seconds, 30, 1),
		churn: num("churn", v.churn, 0, 0),
		gpus: Math.floor(num("gpus", v.gpus, 2, 0)),
		tickMs: num("tick-ms", v["tick-ms"], 1000, 10),
		prefix: v.prefix,
		token: read(v["token-file"])?.toString().trim(),
		ca: read(v.ca),
	},
	(s) => console.error(`simulate: ${s}`),
);
if (v.json) console.log(JSON.stringify(report, null, 2));
else {
	const l = (x: typeof report.heartbeats) => `${x.acked}/${x.sent} acked, p50 ${x.p50Ms ?? "–"} ms, p99 ${x.p99Ms ?? "–"} ms, max ${x.maxMs ?? "–"} ms`;
	console.log(
		`simulate: ${report.welcomed}/${report.hives} hives welcomed${report.joinMs === null ? "" : ` (all within ${report.joinMs} ms)`}, ${report.connectedAtEnd} connected at the end, ${report.reconnects} reconnects`,
	);
	console.log(`  heartbeats over ${report.seconds} s: ${l(report.heartbeats)}`);
	console.log(`  spawns and exits: ${l(report.lifecycle)}`);
	console.log(`  intervals told (ms → hives): ${JSON.stringify(report.intervals)}`);
	console.log(`  this process's CPU: ${report.cpu.joinSeconds} s to join, ${report.cpu.windowCores} cores while measured`);
	console.log(`  refusals and drops: ${JSON.stringify(report.refusals)}; commands: ${JSON.stringify(report.commands)}`);
}
process.exit(report.welcomed === report.hives ? 0 : 1);
