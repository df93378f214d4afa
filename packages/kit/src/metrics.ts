import { GPU_SIGNALS, type GpuInfo, SIGNAL_NAMES } from "@apiary/protocol";
import { Registry } from "prom-client";

// Prometheus helpers in the naming of cAdvisor/kubelet where one exists.
// A value that was not measured is left out, never exported as 0.

type Labels = Record<string, string | number>;
export type Sample = [Labels, number | null | undefined];

interface Family {
	name: string;
	help: string;
	type: "gauge" | "counter";
	labelNames: string[];
	read: () => Sample[];
}

/** A scrape gives the event loop back after this long (ms). */
const YIELD_MS = 10;

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeValue = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const number = (v: number) => (Number.isNaN(v) ? "NaN" : v === Number.POSITIVE_INFINITY ? "+Inf" : v === Number.NEGATIVE_INFINITY ? "-Inf" : String(v));

/**
 * A prom-client registry whose scrape-time families (gauge, cumulative) are
 * written as text directly. Through prom-client each sample was a label
 * hash, a map entry and a second pass to serialize, and a queen's per-GPU
 * families are a dozen × every GPU of the fleet: at 10,000 hives a third of
 * a queen's CPU went to /metrics scraped once a second (docs/BENCHMARKS.md
 * row 17). Here each label set is written once per scrape (shared by the
 * families that pass the same labels object) and each sample is one line.
 * prom-client keeps what it does well: histograms and counters incremented
 * in place.
 */
export class Exposition extends Registry {
	private readonly families: Family[] = [];
	/** A labels object → its `{…}` text, for the scrape in progress. */
	private written = new WeakMap<Labels, string>();
	private scrapes = 0;
	private readonly ended: (() => void)[] = [];

	add(f: Family): void {
		this.families.push(f);
	}

	/**
	 * `f`'s answer computed once per scrape: a dozen GPU families and the
	 * hive and worker counts each read the whole fleet, which at 10,000 hives
	 * was a dozen views of 20,000 GPUs a scrape. Let go when the scrape ends.
	 */
	perScrape<T>(f: () => T): () => T {
		let held: { v: T; scrape: number } | null = null;
		this.ended.push(() => {
			held = null;
		});
		return () => {
			if (held?.scrape !== this.scrapes) held = { v: f(), scrape: this.scrapes };
			return held.v;
		};
	}

	/** Written a family at a time, giving the loop back every YIELD_MS: a 10,000-hive scrape had blocked a queen 0.3–0.9 s. */
	override async metrics(): Promise<string> {
		const head = await super.metrics();
		this.scrapes++;
		this.written = new WeakMap();
		const out: string[] = [head.endsWith("\n") || head === "" ? head : `${head}\n`];
		let since = performance.now();
		for (const f of this.families) {
			if (performance.now() - since >= YIELD_MS) {
				await new Promise((r) => setImmediate(r));
				since = performance.now();
			}
			out.push(`# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`);
			for (const [l, v] of f.read()) {
				if (v == null || (f.type === "counter" && !(v >= 0))) continue;
				out.push(`${f.name}${this.labels(l)} ${number(v)}\n`);
			}
		}
		for (const end of this.ended) end();
		return out.join("");
	}

	private labels(l: Labels): string {
		let s = this.written.get(l);
		if (s === undefined) {
			const parts: string[] = [];
			for (const k in l) parts.push(`${k}="${escapeValue(String(l[k]))}"`);
			s = parts.length ? `{${parts.join(",")}}` : "";
			this.written.set(l, s);
		}
		return s;
	}
}

/** A counter whose value is a cumulative number read elsewhere (e.g. cpu usage). */
export function cumulative(reg: Exposition, name: string, help: string, labelNames: string[], read: () => Sample[]): void {
	reg.add({ name, help, type: "counter", labelNames, read });
}

/** A gauge set at scrape time from `read` (null: not measured, left out). */
export function gauge(reg: Exposition, name: string, help: string, labelNames: string[], read: () => Sample[]): void {
	reg.add({ name, help, type: "gauge", labelNames, read });
}

const MiB = 1024 * 1024;

/** Per-GPU gauges; the queen adds the free flag. */
export function registerGpuMetrics(reg: Exposition, gpus: () => (GpuInfo & { hiveId: string; free?: boolean })[]): void {
	const labels = ["hive", "gpu", "uuid", "name"];
	// One labels object per GPU (and so one written label set) for all its families.
	let held = new WeakMap<object, Labels>();
	let of: unknown = null;
	const l = (g: GpuInfo & { hiveId: string }, list: unknown) => {
		if (list !== of) {
			held = new WeakMap();
			of = list;
		}
		let x = held.get(g);
		if (!x) {
			x = { hive: g.hiveId, gpu: g.index, uuid: g.uuid, name: g.name };
			held.set(g, x);
		}
		return x;
	};
	const each = (f: (g: GpuInfo & { hiveId: string; free?: boolean }) => number | null) => () => {
		const list = gpus();
		return list.map((g): Sample => [l(g, list), f(g)]);
	};
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
