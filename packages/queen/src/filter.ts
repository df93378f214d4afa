import type { EventType, QueenEvent } from "@apiary/protocol";
import { EVENT_TYPES } from "@apiary/protocol/event-types";
import { HttpError } from "@apiary/kit/errors";

export interface EventFilter {
	/** The event types asked for (null: all), resolved once at subscription. */
	types: Set<EventType> | null;
	hive: string | null;
	worker: string | null;
}

/** Patterns a subscriber may give: each is matched against every known type once, at subscription. */
export const MAX_TYPE_PATTERNS = 32;

/**
 * Glob match where `*` is any run of characters, in O(pattern × text) time
 * at worst with no backtracking blow-up (the greedy star-restart algorithm):
 * a pattern like `****************z` costs the same as `*z`. A regex built
 * from it would backtrack exponentially against a long event type.
 */
export function globMatch(pattern: string, text: string): boolean {
	let p = 0;
	let t = 0;
	let star = -1;
	let mark = 0;
	while (t < text.length) {
		if (p < pattern.length && pattern[p] !== "*" && pattern[p] === text[t]) {
			p++;
			t++;
		} else if (p < pattern.length && pattern[p] === "*") {
			star = p++;
			mark = t;
		} else if (star >= 0) {
			p = star + 1;
			t = ++mark;
		} else return false;
	}
	while (p < pattern.length && pattern[p] === "*") p++;
	return p === pattern.length;
}

/**
 * "worker.*,hive.lost" → the set of event types it names. Resolved against
 * the fixed list of types once, so each event costs one set lookup however
 * the patterns were written. Too many patterns, or one that names no type
 * (a typo), is a 400 naming `types`.
 */
export function parseTypes(spec: string | undefined): Set<EventType> | null {
	if (!spec) return null;
	const patterns = spec
		.split(",")
		.map((t) => t.trim())
		.filter(Boolean);
	if (patterns.length > MAX_TYPE_PATTERNS) throw new HttpError(400, `querystring.types: at most ${MAX_TYPE_PATTERNS} patterns, got ${patterns.length}`);
	const out = new Set<EventType>();
	for (const p of patterns) {
		const hit = EVENT_TYPES.filter((t) => globMatch(p, t));
		if (hit.length === 0) throw new HttpError(400, `querystring.types: ${JSON.stringify(p)} matches no event type (known: ${EVENT_TYPES.join(", ")})`);
		for (const t of hit) out.add(t);
	}
	return out;
}

/** Stream-level events (snapshot, stream.lagged, stream.reset) always pass. */
export function matches(f: EventFilter, e: QueenEvent): boolean {
	if (e.type === "snapshot" || e.type === "stream.lagged" || e.type === "stream.reset") return true;
	if (f.types && !f.types.has(e.type)) return false;
	if (f.hive && e.hiveId !== f.hive) return false;
	if (f.worker && e.workerId !== f.worker) return false;
	return true;
}
