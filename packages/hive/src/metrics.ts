import type { Snapshot, WorkerInfo } from "@apiary/protocol";
import { cumulative, Exposition, gauge, registerGpuMetrics, type Sample } from "@apiary/kit/metrics";
import { Histogram, type Registry } from "prom-client";
import type { Hive } from "./hive.ts";

// The hive's Prometheus metrics, named as cAdvisor/kubelet name theirs;
// a value the hive could not measure is left out, never exported as 0.

/** The hive's /metrics: per-worker usage from the last tick, tick cost, GPUs. */
export function hiveMetrics(hive: Hive): Registry {
	const reg = new Exposition();
	const snap = (): Snapshot | null => hive.snapshot();
	const running = (): WorkerInfo[] => (snap()?.workers ?? []).filter((w) => w.state === "running" && w.stats);
	const wl = ["hive", "worker"];
	const per = (f: (w: WorkerInfo) => number | null | undefined) => () => running().map((w): Sample => [{ hive: hive.hiveId, worker: w.id }, f(w)]);
	cumulative(
		reg,
		"apiary_worker_cpu_usage_seconds_total",
		"CPU time used by the worker's cgroup.",
		wl,
		per((w) => (w.stats!.cpu.usageNs === null ? null : w.stats!.cpu.usageNs / 1e9)),
	);
	cumulative(
		reg,
		"apiary_worker_cpu_periods_total",
		"CFS enforcement periods.",
		wl,
		per((w) => w.stats!.cpu.periods),
	);
	cumulative(
		reg,
		"apiary_worker_cpu_throttled_periods_total",
		"CFS periods in which the worker was throttled.",
		wl,
		per((w) => w.stats!.cpu.throttledPeriods),
	);
	cumulative(
		reg,
		"apiary_worker_cpu_throttled_seconds_total",
		"Time the worker was throttled.",
		wl,
		per((w) => (w.stats!.cpu.throttledNs === null ? null : w.stats!.cpu.throttledNs / 1e9)),
	);
	gauge(
		reg,
		"apiary_worker_memory_usage_bytes",
		"Memory charged to the worker's cgroup.",
		wl,
		per((w) => w.stats!.memory.currentBytes),
	);
	gauge(
		reg,
		"apiary_worker_memory_working_set_bytes",
		"Memory usage minus inactive file cache.",
		wl,
		per((w) => w.stats!.memory.workingSetBytes),
	);
	gauge(
		reg,
		"apiary_worker_memory_peak_bytes",
		"Peak memory usage.",
		wl,
		per((w) => w.stats!.memory.peakBytes),
	);
	gauge(
		reg,
		"apiary_worker_memory_limit_bytes",
		"Memory limit (absent when unlimited).",
		wl,
		per((w) => w.stats!.memory.limitBytes),
	);
	cumulative(
		reg,
		"apiary_worker_oom_kills_total",
		"Processes of the worker killed by the OOM killer.",
		wl,
		per((w) => w.stats!.memory.oomKills),
	);
	cumulative(
		reg,
		"apiary_worker_io_read_bytes_total",
		"Bytes read from block devices.",
		wl,
		per((w) => w.stats!.io.readBytes),
	);
	cumulative(
		reg,
		"apiary_worker_io_write_bytes_total",
		"Bytes written to block devices.",
		wl,
		per((w) => w.stats!.io.writeBytes),
	);
	cumulative(
		reg,
		"apiary_worker_io_read_ops_total",
		"Read operations on block devices.",
		wl,
		per((w) => w.stats!.io.readOps),
	);
	cumulative(
		reg,
		"apiary_worker_io_write_ops_total",
		"Write operations on block devices.",
		wl,
		per((w) => w.stats!.io.writeOps),
	);
	gauge(
		reg,
		"apiary_worker_pids",
		"Processes and threads in the worker.",
		wl,
		per((w) => w.stats!.pids.current),
	);
	cumulative(reg, "apiary_worker_pressure_stalled_seconds_total", "PSI: time some task of the worker was stalled, by resource.", [...wl, "resource"], () =>
		running().flatMap((w) =>
			(["cpu", "memory", "io"] as const).map(
				(r): Sample => [{ hive: hive.hiveId, worker: w.id, resource: r }, w.stats!.pressure[r] ? w.stats!.pressure[r]!.some.totalUs / 1e6 : null],
			),
		),
	);
	gauge(reg, "apiary_hive_workers", "Workers known to the hive, by state.", ["state"], () => {
		const ws = hive.list();
		return (["running", "exited"] as const).map((s): Sample => [{ state: s }, ws.filter((w) => w.state === s).length]);
	});
	gauge(reg, "apiary_hive_info", "The hive's cgroup driver.", ["hive", "driver", "enforced"], () => [
		[{ hive: hive.hiveId, driver: hive.driver.info.name, enforced: String(hive.driver.info.enforced) }, 1],
	]);
	const tick = new Histogram({
		name: "apiary_hive_tick_duration_seconds",
		help: "Time to sample every worker once.",
		registers: [reg],
		buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
	});
	hive.on("tick", (s: Snapshot) => tick.observe(s.tickMs / 1000));
	registerGpuMetrics(reg, () => (snap()?.gpu.gpus ?? []).map((g) => ({ ...g, hiveId: hive.hiveId })));
	return reg;
}
