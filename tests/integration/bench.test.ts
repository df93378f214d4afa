import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

// Keeps bench/ from rotting: every benchmark once, with tiny sizes. No timing
// is asserted here; the figures live in docs/BENCHMARKS.md.
it("npm run bench -- --quick runs every section and writes its results", () => {
	const root = new URL("../../", import.meta.url).pathname;
	execFileSync(process.execPath, ["bench/run.ts", "--quick"], { cwd: root, stdio: "pipe", timeout: 170_000 });
	const out = JSON.parse(readFileSync(`${root}bench/results/quick.json`, "utf8"));
	expect(out.quick).toBe(true);
	expect(Object.keys(out.results).sort()).toEqual([
		"advise",
		"cli",
		"failover",
		"fanout",
		"fleet",
		"gpu",
		"heartbeat",
		"ingest",
		"memory",
		"overload",
		"pg",
		"placement",
		"runs",
		"simulator",
		"spawnToSse",
		"tick_5",
		"tls",
		"waiters",
	]);
	expect(out.results.pg.hives).toBe(5); // the PostgreSQL section ran its load
	expect(out.results.failover.kills).toBe(2); // and the queen-kill one moved its hive each time
	expect(out.results.fanout.lost).toBe(0);
	// Events really flowed (a hive refused by the queen once made "0 lost" of 0 events).
	expect(out.results.fanout.events).toBeGreaterThan(0);
	expect(out.results.fanout.delivered).toBe(out.results.fanout.subscribers * out.results.fanout.events);
	expect(out.results.ingest.acked).toBe(out.results.ingest.sent);
	expect(out.results.ingest.join.acked).toBe(out.results.ingest.hives);
	expect(out.results.ingest.transportFloor.acked).toBe(out.results.ingest.transportFloor.sent);
	expect(out.results.tick_5.apiaryOverFloor).toBeGreaterThan(0); // the paired ratio was computed
	expect(out.results.heartbeat.gpus).toBe(8);
	expect(out.results.cli.queenWorkersMedianMs).toBeGreaterThan(0); // measured, not asserted as a timing
	expect(out.results.advise.answerBytes).toBeGreaterThan(0); // the query answered every group
	expect(out.results.runs.shards).toBe(10); // the sharded run finished (its section waits for run.finished)
	expect(out.results.advise.keys * out.results.advise.runsPerKey).toBe(500);
	expect(out.results.placement.sustained.placed).toBe(out.results.placement.sustained.asked);
	expect(out.results.placement.sustained.doubleBooked).toBe(0);
	expect(out.results.placement.sustained.runsChecked).toBe(out.results.placement.sustained.placed);
	// The overload section's three loads ran, every hive joined, and no spawn or exit went unacked.
	expect(out.results.overload.loads.map((l: { factor: number }) => l.factor)).toEqual([1, 2, 3]);
	for (const l of out.results.overload.loads) expect(l.lifecycle.acked).toBe(l.lifecycle.sent);
	// After the 3× surge left, every hive that stayed was told its own tick again.
	expect(out.results.overload.loads[2].recovery.ownTickAfterMs).not.toBeNull();
	expect(out.results.overload.loads[2].afterSurge).toEqual({ "0": out.results.overload.loads[2].recovery.stayers });
	// The three-queen fleet joined whole and its events reached every queen.
	expect(out.results.fleet.welcomed).toBe(out.results.fleet.hives);
	expect(out.results.fleet.eventsMissingAtSomeQueen).toBe(0);
	// Events reached the subscribers' thread, and PostgreSQL's own counts of rows written were read.
	expect(out.results.fleet.events).toBeGreaterThan(0);
	expect(out.results.fleet.rowWritesByTable.workers).toBeGreaterThan(0);
	// The simulator section joined every hive and its heartbeats were acked.
	expect(out.results.simulator.welcomed).toBe(out.results.simulator.hives);
	expect(out.results.simulator.heartbeats.acked).toBeGreaterThan(0);
	expect(out.machine.cores).toBeGreaterThan(0);
}, 180_000);
