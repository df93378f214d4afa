// npm run bench [-- --quick] [-- --only tick,heartbeat,...]
// Every figure is measured in this one run, side by side with its floor or
// its peer, so machine noise mostly cancels. Results: bench/results/latest.json
// (--quick: quick.json). One file per section under sections/.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { exitCodeFor, parseFlags, UsageError } from "@apiary/kit/cli";
import { ctx, log, r3 } from "./lib.ts";
import { advise } from "./sections/advise.ts";
import { failover } from "./sections/failover.ts";
import { fleet } from "./sections/fleet.ts";
import { pgStore } from "./sections/pg.ts";
import { runs } from "./sections/runs.ts";
import { placement } from "./sections/placement.ts";
import { cliStart } from "./sections/cli.ts";
import { fanout } from "./sections/fanout.ts";
import { gpuSampling } from "./sections/gpu.ts";
import { heartbeat } from "./sections/heartbeat.ts";
import { ingest } from "./sections/ingest.ts";
import { overload } from "./sections/overload.ts";
import { hiveMemory } from "./sections/memory.ts";
import { simulator } from "./sections/simulator.ts";
import { spawnToSse } from "./sections/spawn.ts";
import { tick } from "./sections/tick.ts";
import { tls } from "./sections/tls.ts";
import { waiters } from "./sections/waiters.ts";

/** The sections in the order they run. */
const SECTIONS: Record<string, () => Promise<void>> = {
	tick,
	heartbeat,
	spawn: spawnToSse,
	ingest,
	fanout,
	gpu: gpuSampling,
	memory: hiveMemory,
	cli: cliStart,
	advise,
	placement,
	runs,
	waiters,
	tls,
	pg: pgStore,
	failover,
	overload,
	fleet,
	simulator,
};

const HELP = `Usage: npm run bench [-- --quick] [-- --gate] [-- --only SECTION[,SECTION...]]

  --quick        tiny sizes, to check every section still runs (writes bench/results/quick.json)
  --gate         the perf tier's reduced sizes (writes bench/results/gate.json; bench/gate.ts reads it)
  --only LIST    only these sections (merged into the previous results): ${Object.keys(SECTIONS).join(", ")}`;

/** The sections asked for; an unknown one is a usage error naming the known ones. */
export function selectSections(argv: string[]): { quick: boolean; gate: boolean; only: string[] | null; help: boolean } {
	const { values: v, positionals } = parseFlags("bench", argv, {
		quick: { type: "boolean" },
		gate: { type: "boolean" },
		only: { type: "string" },
		help: { type: "boolean", short: "h" },
	});
	if (positionals.length > 0) throw new UsageError(`bench: unexpected argument ${JSON.stringify(positionals[0])}`);
	const only = v.only === undefined ? null : v.only.split(",").filter(Boolean);
	for (const s of only ?? [])
		if (!SECTIONS[s]) throw new UsageError(`bench: --only: unknown section ${JSON.stringify(s)} (known: ${Object.keys(SECTIONS).join(", ")})`);
	if (v.quick && v.gate) throw new UsageError("bench: --quick and --gate are two sizes: give one");
	return { quick: v.quick === true, gate: v.gate === true, only, help: v.help === true };
}

async function main(argv: string[]): Promise<number> {
	const { quick, gate, only, help } = selectSections(argv);
	if (help) {
		log(HELP);
		return 0;
	}
	ctx.quick = quick;
	ctx.gate = gate;
	const t0 = performance.now();
	for (const [name, fn] of Object.entries(SECTIONS)) {
		if (only && !only.includes(name)) continue;
		log(`\n== ${name}`);
		const s0 = performance.now();
		await fn();
		log(`   (${((performance.now() - s0) / 1000).toFixed(1)} s)`);
	}
	const out = {
		date: new Date().toISOString(),
		command: `npm run bench${quick ? " -- --quick" : gate ? " -- --gate" : ""}`,
		machine: {
			cpu: cpus()[0]?.model,
			cores: cpus().length,
			memoryBytes: totalmem(),
			node: process.version,
			kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
		},
		quick,
		gate,
		totalSeconds: r3((performance.now() - t0) / 1000),
		results: ctx.results,
	};
	mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
	const name = quick ? "quick" : gate ? "gate" : "latest";
	const file = new URL(`./results/${name}.json`, import.meta.url);
	// The gate's runs are its own: each is read whole (a rerun of some sections merges into it).
	if (only && !gate) {
		// A partial run updates its sections and keeps the others.
		let prev: { results?: Record<string, unknown> } = {};
		try {
			prev = JSON.parse(readFileSync(file, "utf8"));
		} catch {
			// No previous run (or an unreadable one): this run's sections alone.
		}
		out.results = { ...prev.results, ...ctx.results };
		out.command = `${out.command} -- --only=${only.join(",")} (merged into the previous full run)`;
	}
	writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
	log(`\ndone in ${out.totalSeconds} s → bench/results/${name}.json`);
	return 0;
}

if (import.meta.main) {
	let code: number;
	try {
		code = await main(process.argv.slice(2));
	} catch (e) {
		code = exitCodeFor("bench", e, (s) => process.stderr.write(s));
	}
	// Daemons' sockets and timers may linger in this process: exit with the code.
	process.exit(code);
}
