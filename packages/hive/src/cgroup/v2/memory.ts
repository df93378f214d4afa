import { bytesOf, findKeyValues, Keys, scanKeyValues } from "../parse.ts";

export interface MemoryStatRaw {
	anonBytes: number | null;
	fileBytes: number | null;
	inactiveFileBytes: number | null;
	/** tmpfs and shared memory: not page cache, reclaim cannot drop it. */
	shmemBytes: number | null;
}

const MEMORY_STAT = new Keys(["anon", "file", "inactive_file", "shmem"]);
const MEMORY_EVENTS = new Keys(["oom_kill", "oom"]);

/** memory.stat on v2 (bytes), from the read buffer. */
export function scanMemoryStat(b: Buffer, n: number, hints?: Int32Array): MemoryStatRaw {
	const [anon, file, inactive, shmem] = findKeyValues(b, n, "memory.stat", MEMORY_STAT, [], hints);
	return { anonBytes: anon ?? null, fileBytes: file ?? null, inactiveFileBytes: inactive ?? null, shmemBytes: shmem ?? null };
}

export const parseMemoryStat = (text: string): MemoryStatRaw => scanMemoryStat(bytesOf(text), text.length);

/** memory.events, from the read buffer: oom_kill counts processes the kernel OOM killer killed in this cgroup. */
export function scanMemoryEvents(b: Uint8Array, n: number): { oomKills: number | null; ooms: number | null } {
	const [oomKills, ooms] = scanKeyValues(b, n, "memory.events", MEMORY_EVENTS, []);
	return { oomKills: oomKills ?? null, ooms: ooms ?? null };
}

export const parseMemoryEvents = (text: string) => scanMemoryEvents(bytesOf(text), text.length);
