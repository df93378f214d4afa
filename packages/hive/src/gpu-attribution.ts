import type { GpuStatus } from "@apiary/protocol";
import { parseProcCgroup } from "./proc.ts";
import { readOptional } from "./statfile.ts";

export type GpuUseByPid = Map<number, { uuid: string; mib: number | null }[]>;

/** nvidia-smi's compute apps, by pid: what each attributed process uses on which GPU. */
export function gpuUseByPid(gpu: GpuStatus): GpuUseByPid {
	const out: GpuUseByPid = new Map();
	for (const g of gpu.gpus) {
		for (const p of g.processes) {
			if (p.workerId === null) continue;
			const list = out.get(p.pid);
			if (list) list.push({ uuid: g.uuid, mib: p.usedMemoryMiB });
			else out.set(p.pid, [{ uuid: g.uuid, mib: p.usedMemoryMiB }]);
		}
	}
	return out;
}

/** A worker's GPU memory, MiB per GPU uuid, summed over its processes (on a host without GPUs it stays null). */
export function gpuMemoryOf(pids: number[], byPid: GpuUseByPid): Record<string, number> {
	const out: Record<string, number> = {};
	for (const pid of pids) for (const u of byPid.get(pid) ?? []) if (u.mib !== null) out[u.uuid] = (out[u.uuid] ?? 0) + u.mib;
	return out;
}

/**
 * The worker a GPU process belongs to: the one whose cgroup holds it (any
 * hierarchy's path ending in /workers/<id>), else, without cgroups, the
 * worker whose main pid it is.
 */
export function workerOfPid(proc: string, pid: number, known: (id: string) => boolean, mainPidOf: (pid: number) => string | null): string | null {
	const text = readOptional(`${proc}/${pid}/cgroup`);
	if (text) {
		for (const { path } of parseProcCgroup(text)) {
			const m = /\/workers\/([^/]+)/.exec(path);
			if (m && known(m[1]!)) return m[1]!;
		}
	}
	return mainPidOf(pid);
}
