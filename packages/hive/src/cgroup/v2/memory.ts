import { findKeys, parseKeyValue, pick } from "../parse.ts";

export interface MemoryStatRaw {
	anonBytes: number | null;
	fileBytes: number | null;
	inactiveFileBytes: number | null;
}

/** memory.stat on v2 (bytes). */
export function parseMemoryStat(text: string): MemoryStatRaw {
	const m = findKeys(text, "memory.stat", ["anon", "file", "inactive_file"]);
	return { anonBytes: pick(m, "anon"), fileBytes: pick(m, "file"), inactiveFileBytes: pick(m, "inactive_file") };
}

/** memory.events: oom_kill counts processes the kernel OOM killer killed in this cgroup. */
export function parseMemoryEvents(text: string): { oomKills: number | null; ooms: number | null } {
	const m = parseKeyValue(text, "memory.events");
	return { oomKills: pick(m, "oom_kill"), ooms: pick(m, "oom") };
}
