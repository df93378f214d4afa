import { GPU_SIGNALS, type GpuInfo, SIGNAL_NAMES } from "@apiary/protocol";
import { Counter, Gauge, type Registry } from "prom-client";

// Prometheus helpers in the naming of cAdvisor/kubelet where one exists.
// A value that was not measured is left out, never exported as 0.

type Labels = Record<string, string | number>;
export type Sample = [Labels, number | null | undefined];

/** A counter whose value is a cumulative number read elsewhere (e.g. cpu usage). */
export function cumulative(reg: Registry, name: string, help: string, labelNames: string[], read: () => Sample[]): void {
	new Counter({
		name,
		help,
		labelNames,
		registers: [reg],
		collect() {
			this.reset();
			for (const [l, v] of read()) if (v != null && v >= 0) this.inc(l, v);
		},
	});
}

/** A gauge set at scrape time from `read` (null: not measured, left out). */
export function gauge(reg: Registry, name: string, help: string, labelNames: string[], read: () => Sample[]): void {
	new Gauge({
		name,
		help,
		labelNames,
		registers: [reg],
		collect() {
			this.reset();
			for (const [l, v] of read()) if (v != null) this.set(l, v);
		},
	});
}

const MiB = 1024 * 1024;

/** Per-GPU gauges; the queen adds the free flag. */
export function registerGpuMetrics(reg: Registry, gpus: () => (GpuInfo & { hiveId: string; free?: boolean })[]): void {
	const labels = ["hive", "gpu", "uuid", "name"];
	const l = (g: GpuInfo & { hiveId: string }) => ({ hive: g.hiveId, gpu: g.index, uuid: g.uuid, name: g.name });
	const each = (f: (g: GpuInfo & { hiveId: string; free?: boolean }) => number | null) => () => gpus().map((g): Sample => [l(g), f(g)]);
	gauge(
		reg,
		"apiary_gpu_memory_used_bytes",
		"GPU memory in use.",
		labels,
		each((g) => (g.memoryUsedMiB === null ? null : g.memoryUsedMiB * MiB)),
	);
	gauge(
		reg,
		"apiary_gpu_memory_total_bytes",
		"GPU memory in all.",
		labels,
		each((g) => (g.memoryTotalMiB === null ? null : g.memoryTotalMiB * MiB)),
	);
	gauge(
		reg,
		"apiary_gpu_utilization_ratio",
		"GPU utilization, 0 to 1 (absent under MIG).",
		labels,
		each((g) => (g.utilizationGpu === null ? null : g.utilizationGpu / 100)),
	);
	gauge(
		reg,
		"apiary_gpu_power_watts",
		"GPU power draw.",
		labels,
		each((g) => g.powerDrawW),
	);
	gauge(
		reg,
		"apiary_gpu_temperature_celsius",
		"GPU temperature.",
		labels,
		each((g) => g.temperatureC),
	);
	gauge(
		reg,
		"apiary_gpu_sample_age_seconds",
		"Age of the GPU's last reading.",
		labels,
		each((g) => g.ageMs / 1000),
	);
	// The health signals, each under its dcgm-exporter name where it has one (gpu-signals.ts); flags are 1/0, text is left out.
	for (const n of SIGNAL_NAMES) {
		const sig = GPU_SIGNALS[n];
		if (sig.metric === null) continue;
		gauge(
			reg,
			sig.metric,
			sig.help,
			labels,
			each((g) => {
				const v = g.signals?.[n];
				return typeof v === "boolean" ? (v ? 1 : 0) : typeof v === "number" ? v : null;
			}),
		);
	}
	gauge(
		reg,
		"apiary_gpu_health",
		"The GPU's verdict: 0 healthy, 1 degraded, 2 unhealthy (absent: nothing can be known).",
		labels,
		each((g) => (g.health == null ? null : g.health === "healthy" ? 0 : g.health === "degraded" ? 1 : 2)),
	);
	gauge(
		reg,
		"apiary_gpu_free",
		"1 when the GPU is in the free pool.",
		labels,
		each((g) => (g.free === undefined ? null : g.free ? 1 : 0)),
	);
}
