import type { HiveState } from "@apiary/protocol";

export interface LivenessRules {
	staleAfterMs: number;
	evictAfterMs: number;
}

/**
 * The liveness state machine, on the queen's monotonic clock (never the
 * hive's): ready → stale after staleAfterMs of silence → lost after
 * evictAfterMs. A hive not yet heard from since the queen started (unknown)
 * goes straight to lost once evictAfterMs passes. Lost and left are final
 * until the hive says hello again. Returns the new state, or null for none.
 */
export function livenessTransition(state: HiveState, silentMs: number, r: LivenessRules): "stale" | "lost" | null {
	if (state === "lost" || state === "left") return null;
	if (silentMs > r.evictAfterMs) return "lost";
	if (state === "ready" && silentMs > r.staleAfterMs) return "stale";
	return null;
}
