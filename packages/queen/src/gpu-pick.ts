import type { GpuInfo, GpuView, HiveState } from "@apiary/protocol";

// Pure GPU questions: is one free, which free ones to hand out, in what order.

/** Free memory as nvidia-smi reports it, else total − used. */
export const freeMemoryMiB = (g: GpuInfo): number => g.memoryFreeMiB ?? (g.memoryTotalMiB ?? 0) - (g.memoryUsedMiB ?? 0);

/**
 * A GPU is free when its hive is ready and not cordoned, it is not
 * unhealthy, its reading is fresh, no live worker holds it, no claim holds
 * it, and its memory in use is under the busy mark.
 */
export function isGpuFree(
	g: GpuInfo,
	o: { hiveState: HiveState | undefined; cordoned?: boolean; heldBy: number; claimed: boolean; busyMemoryMiB: number },
): boolean {
	return (
		o.hiveState === "ready" &&
		!o.cordoned &&
		g.health !== "unhealthy" &&
		!g.stale &&
		o.heldBy === 0 &&
		!o.claimed &&
		(g.memoryUsedMiB === null || g.memoryUsedMiB < o.busyMemoryMiB)
	);
}

/** Best fit first: the smallest free memory that still fits, then hive and index. */
export function byBestFit(a: GpuView, b: GpuView): number {
	return freeMemoryMiB(a) - freeMemoryMiB(b) || a.hiveId.localeCompare(b.hiveId) || a.index - b.index;
}

export interface PickRequest {
	count: number;
	minMemoryMiB?: number;
	sameHive?: boolean;
}

/**
 * Which of the free GPUs (already filtered and sorted best-fit) to hand out:
 * with sameHive, all from the hive with the fewest free GPUs that still has
 * enough, so a later larger request is not fragmented out. Returns the pick,
 * or a diagnosis of why none fits.
 */
export function pickGpus(free: GpuView[], req: PickRequest): { gpus: GpuView[] } | { error: string } {
	let pick: GpuView[];
	if (req.sameHive) {
		const byHive = new Map<string, GpuView[]>();
		for (const g of free) {
			const list = byHive.get(g.hiveId);
			if (list) list.push(g);
			else byHive.set(g.hiveId, [g]);
		}
		const fits = [...byHive.values()].filter((l) => l.length >= req.count).sort((a, b) => a.length - b.length);
		pick = fits[0]?.slice(0, req.count) ?? [];
	} else pick = free.slice(0, req.count);
	if (pick.length === req.count) return { gpus: pick };
	return {
		error: `not enough free GPUs: wanted ${req.count}${req.minMemoryMiB ? ` with ≥ ${req.minMemoryMiB} MiB free` : ""}${req.sameHive ? " on one hive" : ""}, ${req.sameHive ? "no hive has that many" : `${free.length} free`}`,
	};
}

/** Whether a GPU reading changed enough to be worth an event and a row write. */
export function gpuChanged(a: GpuInfo, b: GpuInfo): boolean {
	return (
		a.memoryUsedMiB !== b.memoryUsedMiB ||
		a.utilizationGpu !== b.utilizationGpu ||
		a.stale !== b.stale ||
		healthChanged(a, b) ||
		a.processes.length !== b.processes.length ||
		a.processes.some((p, i) => p.pid !== b.processes[i]?.pid || p.workerId !== b.processes[i]?.workerId)
	);
}

/** Whether a GPU's verdict or its reasons changed (a `gpu.health` event). */
export function healthChanged(a: GpuInfo, b: GpuInfo): boolean {
	const codes = (g: GpuInfo) => (g.healthReasons ?? []).map((r) => r.code).join(",");
	return (a.health ?? null) !== (b.health ?? null) || codes(a) !== codes(b);
}
