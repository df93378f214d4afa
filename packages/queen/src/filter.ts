import type { QueenEvent } from "@apiary/protocol";

export interface EventFilter {
	types: RegExp[] | null;
	hive: string | null;
	worker: string | null;
}

/** "worker.*,hive.lost" → matchers; `*` matches any run of characters. */
export function parseTypes(spec: string | undefined): RegExp[] | null {
	if (!spec) return null;
	return spec
		.split(",")
		.map((t) => t.trim())
		.filter(Boolean)
		.map((t) => new RegExp(`^${t.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`));
}

/** Stream-level events (snapshot, stream.lagged) always pass. */
export function matches(f: EventFilter, e: QueenEvent): boolean {
	if (e.type === "snapshot" || e.type === "stream.lagged") return true;
	if (f.types && !f.types.some((r) => r.test(e.type))) return false;
	if (f.hive && e.hiveId !== f.hive) return false;
	if (f.worker && e.workerId !== f.worker) return false;
	return true;
}
