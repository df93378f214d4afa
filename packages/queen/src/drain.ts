import type { Drain, EventType } from "@apiary/protocol";

// Cordon and drain as a pure state machine: what a request does to a hive's
// drain state, and which event says so. The rules are Slurm NHC's: an
// automatic cordon (reason `auto:…`, the hive's own, --cordon-on-unhealthy-gpu)
// never replaces a person's cordon or drain, and its automatic lifting only
// ever lifts an automatic cordon.

export const AUTO_PREFIX = "auto:";
export const DEFAULT_DRAIN_DEADLINE_S = 3600;

export type DrainAction =
	| { op: "cordon"; reason: string | null; by: string | null; auto?: boolean }
	| { op: "drain"; reason: string | null; by: string | null; deadlineMs: number }
	| { op: "uncordon"; by: string | null; auto?: boolean }
	/** A draining hive with no running worker left. */
	| { op: "drained" };

export interface DrainChange {
	drain: Drain | null;
	/** null: nothing changed. */
	event: EventType | null;
}

export const isAuto = (d: Drain | null | undefined): boolean => d?.state === "cordoned" && (d.reason ?? "").startsWith(AUTO_PREFIX);

/** The next state of a hive's drain; `now` in ms since the epoch. */
export function nextDrain(cur: Drain | null, a: DrainAction, now: number): DrainChange {
	const at = new Date(now).toISOString();
	const same: DrainChange = { drain: cur, event: null };
	switch (a.op) {
		case "cordon": {
			if (a.auto) {
				// Only a schedulable hive is cordoned automatically; a person's state is left alone.
				if (cur !== null) return same;
				return { drain: { state: "cordoned", reason: a.reason, by: a.by, at, deadline: null }, event: "hive.cordoned" };
			}
			// A drain already keeps it out; cordoning again only changes the reason (a person's replaces an automatic one).
			if (cur && cur.state !== "cordoned") return same;
			if (cur && cur.reason === a.reason && cur.by === a.by) return same;
			return { drain: { state: "cordoned", reason: a.reason, by: a.by, at: cur && !isAuto(cur) ? cur.at : at, deadline: null }, event: "hive.cordoned" };
		}
		case "drain": {
			if (cur?.state === "drained") return same;
			const deadline = new Date(now + a.deadlineMs).toISOString();
			return {
				drain: { state: "draining", reason: a.reason, by: a.by, at: cur?.state === "draining" ? cur.at : at, deadline },
				event: "hive.draining",
			};
		}
		case "uncordon": {
			if (cur === null) return same;
			if (a.auto && !isAuto(cur)) return same;
			return { drain: null, event: "hive.uncordoned" };
		}
		case "drained": {
			if (cur?.state !== "draining") return same;
			return { drain: { ...cur, state: "drained" }, event: "hive.drained" };
		}
	}
}
