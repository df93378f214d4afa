import type { Drain, GpuRequest, GpuView, HiveState } from "@apiary/protocol";
import { byBestFit, freeMemoryMiB } from "../gpu-pick.ts";

// Where a worker goes: pure, from the hives as the registry sees them. GPUs
// best fit (the hive with the fewest matching free GPUs that still has
// enough, so a later 4-GPU job is not fragmented out); CPU-only workers to
// the hive with the most uncommitted CPU and memory that fits. A refusal is
// a diagnosis a person can act on.

export interface Candidate {
	id: string;
	state: HiveState;
	connected: boolean;
	remoteSpawn: boolean;
	/** Cordoned, draining or drained: takes nothing new. */
	drain?: Drain | null;
	labels: Record<string, string>;
	cores: number;
	memoryBytes: number;
	/** Limits of its running workers (what is promised, not what is used). */
	committedCpu: number;
	committedMemoryBytes: number;
}

export interface Want {
	hive?: string;
	constraints?: Record<string, string>;
	gpus?: GpuRequest;
	cpu: number | null;
	memoryBytes: number | null;
}

export type Choice = { hiveId: string; gpus: GpuView[] } | { error: string };

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Why a hive cannot take anything now, or null when it can. */
function unavailable(h: Candidate): string | null {
	if (h.state !== "ready") return `is ${h.state}`;
	if (!h.connected) return "is not connected to this queen";
	if (!h.remoteSpawn) return "refuses placements (--no-remote-spawn)";
	if (h.drain) return `is ${h.drain.state}${h.drain.reason ? ` (${h.drain.reason})` : ""}`;
	return null;
}

function fitsResources(h: Candidate, w: Want): boolean {
	return (w.cpu === null || h.cores - h.committedCpu >= w.cpu - 1e-9) && (w.memoryBytes === null || h.memoryBytes - h.committedMemoryBytes >= w.memoryBytes);
}

/** What the request asks for, as the diagnosis says it. */
export function describeWant(w: Want): string {
	const parts: string[] = [];
	if (w.gpus)
		parts.push(
			`${plural(w.gpus.count, "GPU")}${w.gpus.name ? ` named like ${w.gpus.name}` : ""}${w.gpus.minMemoryMiB ? ` with ≥ ${w.gpus.minMemoryMiB} MiB` : ""} on one hive`,
		);
	if (w.cpu !== null) parts.push(`${w.cpu} cores`);
	if (w.memoryBytes !== null) parts.push(`${Math.ceil(w.memoryBytes / 2 ** 20)} MiB`);
	return parts.length ? parts.join(", ") : "any hive";
}

export function choose(hives: Candidate[], freeGpus: GpuView[], w: Want): Choice {
	const where = w.hive
		? ` on hive ${w.hive}`
		: w.constraints
			? ` on hives with ${Object.entries(w.constraints)
					.map(([k, v]) => `${k}=${v}`)
					.join(",")}`
			: "";
	let pool = hives;
	if (w.hive) {
		pool = pool.filter((h) => h.id === w.hive);
		if (pool.length === 0) return { error: `no hive ${w.hive}` };
	}
	if (w.constraints) {
		pool = pool.filter((h) => Object.entries(w.constraints!).every(([k, v]) => h.labels[k] === v));
		if (pool.length === 0) return { error: `need ${describeWant(w)}${where}: no hive has those labels` };
	}
	const notes: string[] = [];
	if (w.gpus) {
		const g = w.gpus;
		// Grouped by hive in one pass: a filter of the whole list per hive was
		// hives × GPUs (3.6 s of blocked loop at 5,000 hives).
		const byHive = new Map<string, GpuView[]>();
		for (const x of freeGpus)
			if (
				// CUDA enumerates one MIG instance per process: instances go to 1-GPU requests only.
				(g.count === 1 || !x.migParent) &&
				(g.minMemoryMiB === undefined || freeMemoryMiB(x) >= g.minMemoryMiB) &&
				(g.name === undefined || x.name.toLowerCase().includes(g.name.toLowerCase()))
			) {
				const list = byHive.get(x.hiveId);
				if (list) list.push(x);
				else byHive.set(x.hiveId, [x]);
			}
		for (const list of byHive.values()) list.sort(byBestFit);
		const matching = (hiveId: string) => byHive.get(hiveId) ?? [];
		const fits: { h: Candidate; gpus: GpuView[] }[] = [];
		const short = new Map<number, number>();
		for (const h of pool) {
			const gpus = matching(h.id);
			const why = unavailable(h);
			if (why) {
				// Only worth saying where it would otherwise have fitted; a cordoned hive's GPUs are never free, so it is named.
				if (h.drain) notes.push(`hive ${h.id} ${why}`);
				else if (gpus.length >= g.count) notes.push(`hive ${h.id} has ${gpus.length} free but ${why}`);
				continue;
			}
			if (gpus.length < g.count) short.set(gpus.length, (short.get(gpus.length) ?? 0) + 1);
			else if (!fitsResources(h, w)) notes.push(`hive ${h.id} has the GPUs but not the CPU or memory uncommitted`);
			else fits.push({ h, gpus });
		}
		if (fits.length > 0) {
			fits.sort((a, b) => a.gpus.length - b.gpus.length || a.h.id.localeCompare(b.h.id));
			return { hiveId: fits[0]!.h.id, gpus: fits[0]!.gpus.slice(0, g.count) };
		}
		const counts = [...short].sort((a, b) => b[0] - a[0]).map(([free, n]) => `${plural(n, "hive")} ${n === 1 ? "has" : "have"} ${free} free`);
		return { error: `need ${describeWant(w)}${where}: ${[...counts, ...notes].join("; ") || "no hive has GPUs"}` };
	}
	let best: { h: Candidate; score: number } | null = null;
	let full = 0;
	for (const h of pool) {
		const why = unavailable(h);
		if (why) {
			notes.push(`hive ${h.id} ${why}`);
			continue;
		}
		if (!fitsResources(h, w)) {
			full++;
			continue;
		}
		// The most uncommitted CPU and memory, each as a share of the hive.
		const score = (h.cores - h.committedCpu) / Math.max(h.cores, 1e-9) + (h.memoryBytes - h.committedMemoryBytes) / Math.max(h.memoryBytes, 1);
		if (!best || score > best.score || (score === best.score && h.id < best.h.id)) best = { h, score };
	}
	if (best) return { hiveId: best.h.id, gpus: [] };
	const parts = full > 0 ? [`${plural(full, "hive")} ${full === 1 ? "has" : "have"} less uncommitted`, ...notes] : notes;
	return { error: `need ${describeWant(w)}${where}: ${parts.join("; ") || "no hive"}` };
}
