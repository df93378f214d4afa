import { cumulative, Exposition, gauge, registerGpuMetrics, type Sample } from "@apiary/kit/metrics";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Registry as Fleet } from "./registry.ts";

export interface QueenMetrics {
	registry: Registry;
	heartbeat(seconds: number): void;
	lagged(dropped: number): void;
}

export function queenMetrics(
	fleet: Fleet,
	connections: () => number,
	db?: { rowsWritten(): number; commits(): number },
	heartbeatTarget?: () => number,
	intake?: { waiting: number; oldestWaitMs(): number },
): QueenMetrics {
	const reg = new Exposition();
	const heartbeats = new Counter({ name: "apiary_queen_heartbeats_total", help: "Heartbeats received from hives.", registers: [reg] });
	const ingest = new Histogram({
		name: "apiary_queen_ingest_duration_seconds",
		help: "Time to apply one heartbeat (registry, SQLite transaction, events).",
		registers: [reg],
		buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
	});
	const laggedSubs = new Counter({ name: "apiary_queen_sse_lagged_subscribers_total", help: "SSE subscribers closed for falling behind.", registers: [reg] });
	const dropped = new Counter({
		name: "apiary_queen_sse_events_dropped_total",
		help: "Events not delivered to subscribers that lagged (they resume by id).",
		registers: [reg],
	});
	// Read from the log's own tallies at scrape time: a heartbeat logs dozens
	// of events, and a prom-client inc per event was a visible share of ingest.
	const logged = fleet.events.counts;
	cumulative(reg, "apiary_queen_events_total", "Events logged, by type.", ["type"], () => [...logged].map(([type, n]) => [{ type }, n]));
	cumulative(reg, "apiary_queen_evictions_total", "Workers evicted (their hive was lost, left, or restarted without them).", [], () => [
		[{}, logged.get("worker.evicted") ?? 0],
	]);
	new Gauge({
		name: "apiary_queen_sse_subscribers",
		help: "Open SSE subscriptions.",
		registers: [reg],
		collect() {
			this.set(fleet.events.subscribers);
		},
	});
	new Gauge({
		name: "apiary_queen_hive_connections",
		help: "Hives connected over the socket.",
		registers: [reg],
		collect() {
			this.set(connections());
		},
	});
	if (heartbeatTarget)
		gauge(
			reg,
			"apiary_queen_heartbeat_target_per_second",
			"Heartbeats a second this queen paces its hives to: --max-heartbeats-per-second, lowered while it is busy.",
			[],
			() => [[{}, heartbeatTarget()]],
		);
	if (intake) {
		// The queen's own backlog (intake.ts): what arrived and has not been applied yet.
		gauge(reg, "apiary_queen_heartbeats_waiting", "Hive messages received and waiting their turn to be applied.", [], () => [[{}, intake.waiting]]);
		gauge(reg, "apiary_queen_heartbeat_wait_seconds", "How long the oldest waiting hive message has waited.", [], () => [[{}, intake.oldestWaitMs() / 1000]]);
	}
	const counts = reg.perScrape(() => fleet.counts());
	const byState = (m: Map<string, number>, states: string[]): Sample[] => states.map((state) => [{ state }, m.get(state) ?? 0]);
	gauge(reg, "apiary_queen_hives", "Hives by state.", ["state"], () => byState(counts().hives, ["ready", "stale", "lost", "unknown", "left"]));
	// Per hive, as kube-state-metrics' kube_node_spec_unschedulable: which hives are out of rotation and how far.
	gauge(reg, "apiary_queen_hive_drain", "1 for each hive cordoned, draining or drained, by its drain state.", ["hive", "state"], () =>
		counts().drains.map((d): Sample => [{ hive: d.id, state: d.state }, 1]),
	);
	gauge(reg, "apiary_queen_workers", "Workers by state.", ["state"], () => byState(counts().workers, ["running", "exited", "evicted"]));
	registerGpuMetrics(
		reg,
		reg.perScrape(() => fleet.listGpus()),
	);
	if (db) {
		// PostgreSQL only: what the queen costs the shared database.
		cumulative(reg, "apiary_queen_db_rows_written_total", "Rows the queen inserted, updated or deleted in PostgreSQL.", [], () => [[{}, db.rowsWritten()]]);
		cumulative(reg, "apiary_queen_db_commits_total", "PostgreSQL transactions the queen committed.", [], () => [[{}, db.commits()]]);
	}
	return {
		registry: reg,
		heartbeat(seconds) {
			heartbeats.inc();
			ingest.observe(seconds);
		},
		lagged(n) {
			laggedSubs.inc();
			dropped.inc(n);
		},
	};
}
