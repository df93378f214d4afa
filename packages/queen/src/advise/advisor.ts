import type { ExitRecord, Limits, Recommendation, RecommendationGroup, RecommendationsAnswer } from "@apiary/protocol";
import { CONSTANTS, recommendAll } from "./estimator.ts";
import { type RunBounds, type RunSummary, sanitize, summarize } from "./run.ts";
import type { RunTable } from "../store/runs.ts";

export interface AdvisorOptions {
	/** Labels that, with the profile, key a group of runs (queen start --advise-labels). */
	keyLabels: string[];
	/** Runs kept per key (the newest). */
	runsPerKey?: number;
	/** Keys kept; past it the key whose newest run is oldest goes. */
	maxKeys?: number;
	/** One line per event worth knowing (figures dropped, a group that failed). */
	log?: (msg: string, extra?: object) => void;
}

/**
 * A group's recommendations are kept until a run is added to it or this
 * much time passed (decay, the floor window and the OOM hold move with the
 * clock, slowly): a dashboard or scheduler polling costs no recomputation.
 */
const CACHE_MS = 60_000;

interface Group {
	key: string;
	cached: { at: number; recs: Recommendation[] } | null;
	profile: string | null;
	labels: Record<string, string>;
	/** Oldest first. */
	runs: RunSummary[];
}

/**
 * Right-sizing's history and its questions: every run's summary, grouped by
 * profile and the key labels, in memory (bounded: runsPerKey × maxKeys) and
 * in the store, so a query costs the estimator only, never a table scan.
 */
export class Advisor {
	readonly keyLabels: string[];
	private readonly runsPerKey: number;
	private readonly maxKeys: number;
	private readonly groups = new Map<string, Group>();
	private readonly o: AdvisorOptions;

	private readonly table: RunTable;

	constructor(table: RunTable, o: AdvisorOptions) {
		this.table = table;
		this.o = o;
		this.keyLabels = [...o.keyLabels].sort();
		this.runsPerKey = o.runsPerKey ?? 1000;
		this.maxKeys = o.maxKeys ?? 1000;
		// Rows from before figures were checked where they enter: out-of-range values are dropped here too.
		let bad = 0;
		for (const { key, run } of table.all()) {
			if (sanitize(run).length > 0) bad++;
			this.group(key, run).runs.push(run);
		}
		if (bad > 0) o.log?.("right-sizing: runs with figures out of range were loaded with those figures dropped", { runs: bad });
		for (const g of this.groups.values()) if (g.runs.length > this.runsPerKey) g.runs.splice(0, g.runs.length - this.runsPerKey);
	}

	private keyOf(run: RunSummary): { key: string; labels: Record<string, string> } {
		const labels: Record<string, string> = {};
		for (const k of this.keyLabels) if (run.labels[k] !== undefined) labels[k] = run.labels[k]!;
		return { key: JSON.stringify([run.profile, labels]), labels };
	}

	private group(key: string, run: RunSummary): Group {
		let g = this.groups.get(key);
		if (!g) {
			g = { key, profile: run.profile, labels: this.keyOf(run).labels, runs: [], cached: null };
			this.groups.set(key, g);
		}
		return g;
	}

	/**
	 * Records a finished run (inside the caller's transaction); returns its
	 * summary, or null for a run that never ran. `stored`: another queen
	 * recorded it in the shared store already; only this queen's memory learns it.
	 */
	record(
		worker: { profile: string | null; labels: Record<string, string>; limits: Limits },
		exit: ExitRecord,
		stored = false,
		from?: { hiveId: string; bounds: RunBounds },
	): RunSummary | null {
		const run = summarize(worker, exit);
		if (!run) return null;
		const dropped = sanitize(run, from?.bounds);
		if (dropped.length > 0) this.o.log?.("right-sizing: a run's figures out of range were dropped", { hiveId: from?.hiveId ?? null, fields: dropped });
		const { key } = this.keyOf(run);
		const g = this.group(key, run);
		g.runs.push(run);
		g.cached = null;
		if (stored) {
			if (g.runs.length > this.runsPerKey) g.runs.splice(0, g.runs.length - this.runsPerKey);
			return run;
		}
		this.table.insert(key, run);
		if (g.runs.length > this.runsPerKey) {
			g.runs.splice(0, g.runs.length - this.runsPerKey);
			this.table.trim(key, this.runsPerKey);
		}
		if (this.groups.size > this.maxKeys) this.dropStalest();
		return run;
	}

	private dropStalest(): void {
		let stalest: Group | null = null;
		for (const g of this.groups.values()) if (!stalest || (g.runs.at(-1)?.endedAt ?? 0) < (stalest.runs.at(-1)?.endedAt ?? 0)) stalest = g;
		if (!stalest) return;
		this.groups.delete(stalest.key);
		this.table.dropKey(stalest.key);
	}

	/** Recommendations per group, for the groups (and within them the runs) that match. */
	recommend(filter: { profile?: string; label?: [string, string] }, now: number): RecommendationsAnswer {
		const groups: RecommendationGroup[] = [];
		const profile = filter.profile === "none" ? null : filter.profile;
		for (const g of this.groups.values()) {
			if (profile !== undefined && g.profile !== profile) continue;
			let runs = g.runs;
			let recs: Recommendation[] | null = g.cached && now - g.cached.at < CACHE_MS && now >= g.cached.at ? g.cached.recs : null;
			if (filter.label) {
				recs = null;
				const [k, v] = filter.label;
				runs = runs.filter((r) => r.labels[k] === v);
				if (runs.length === 0) continue;
			}
			const last = runs.at(-1);
			if (recs === null) {
				try {
					recs = recommendAll([...runs].reverse(), { now });
				} catch (err) {
					// One group's failure is that group's: the others are still answered.
					this.o.log?.("right-sizing: a group's recommendations failed", { profile: g.profile, labels: g.labels, err: String(err) });
					continue;
				}
				if (!filter.label) g.cached = { at: now, recs };
			}
			groups.push({
				profile: g.profile,
				labels: g.labels,
				runs: runs.length,
				lastRunAt: last ? new Date(last.endedAt).toISOString() : null,
				recommendations: recs,
			});
		}
		groups.sort((a, b) => b.runs - a.runs || String(a.profile).localeCompare(String(b.profile)));
		return { keyLabels: this.keyLabels, minRuns: CONSTANTS.minRuns, groups };
	}
}
