import type { Backtest, Recommendation, Resource } from "@apiary/protocol";
import { formatBytes, formatDuration } from "@apiary/protocol/units";
import { confidence, quantileBounds, weightedQuantile } from "./order-stats.ts";
import type { RunSummary } from "./run.ts";

// Limits from run history: per resource, each run's *need* (its peak, or a
// raised lower bound when the limit cut it short), a quantile of the needs
// weighted by age, a safety margin, floors that keep recent successful runs
// fitting, and a confidence and bounds from order statistics. Pure: runs and
// the time in, a recommendation out. docs/right-sizing.md gives the method
// and where each constant comes from; this file keeps the four resources'
// rules side by side as that page reads (hence over 300 lines).

const MiB = 2 ** 20;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const CONSTANTS = {
	/** Fewer runs than this: no recommendation. */
	minRuns: 20,
	/** Weights halve every week (VPA's histograms: 24 h; CI suites change with code, weekly). */
	halfLifeMs: 7 * DAY,
	/** Recent runs, whose needs are floors: two half-lives. */
	floorWindowMs: 14 * DAY,
	/** VPA's recommendation-margin-fraction. */
	margin: 1.15,
	/** VPA's OOM bump: max(+100 MiB, ×1.2) over what the OOM-killed run was using or allowed. */
	oomBumpBytes: 100 * MiB,
	oomBumpRatio: 1.2,
	/** After an OOM kill the memory recommendation does not drop below the limit that run had, for this long. */
	oomHoldMs: DAY,
	/** A run is throttled when more than this share of its CFS periods were, or CPU pressure was above this many percent. */
	throttledFraction: 0.1,
	cpuPressure: 10,
	/** A throttled run's CPU need is at least its average ×1.2 (as the OOM bump) and its p95 tick. */
	throttleBump: 1.2,
	memoryQuantile: 0.95,
	/** VPA's target CPU percentile. */
	cpuQuantile: 0.9,
	timeoutQuantile: 0.99,
	/** Timeouts catch hangs, not slow runs: 1.5× the p99 duration. */
	timeoutHeadroom: 1.5,
	/** Confidence level of the lower and upper bounds. */
	boundLevel: 0.95,
} as const;

/** Needs listed per recommendation (newest first): enough for a plot, small enough for 50 groups in one answer. */
export const MAX_VALUES = 200;

type C = { readonly [K in keyof typeof CONSTANTS]: number };

interface Need {
	value: number;
	weight: number;
	/** Ended within the floor window. */
	recent: boolean;
	/** A lower bound (the run was cut short by its limit), raised. */
	raised: boolean;
	limit: number | null;
	durationMs: number | null;
}

// ---- per resource -------------------------------------------------------------------

export interface Options {
	now: number;
	constants?: Partial<C>;
}

const roundUp = (v: number, step: number) => Math.ceil(v / step - 1e-9) * step;
const roundMemory = (b: number) => roundUp(b, 16 * MiB);
const roundCores = (c: number) => Math.max(0.05, Math.round(roundUp(c, 0.05) * 100) / 100);
const roundTimeout = (ms: number) => (ms <= 10 * 60_000 ? roundUp(ms, 10_000) : roundUp(ms, 60_000));
const roundGpu = (mib: number) => roundUp(mib, 1024);

interface Spec {
	resource: Resource;
	/** As a person says it. */
	name: string;
	/** What a raised need stands for: one, and its plural ("an OOM kill", "OOM kills"). */
	raisedAs: [string, string];
	unit: Recommendation["unit"];
	q: number;
	/** Applied to the weighted quantile. */
	factor: number;
	round: (v: number) => number;
	/** Whether the needs of recent runs are floors (not for CPU: too little is slower, not a failure). */
	floors: boolean;
	/** Which backtest count a need above the recommendation adds to. */
	fails: "oomKilled" | "timedOut" | "throttled" | null;
	/** limit × hours → the unit-hours the backtest reports (null: not a held resource). */
	unitHours: ((limitMinusRec: number, ms: number) => number) | null;
	fmt: (v: number) => string;
}

const fmtBytes = (b: number) => formatBytes(b);
const fmtMs = (ms: number) => formatDuration(ms);

interface Context {
	runs: readonly RunSummary[];
	current: number | null;
	o: Options;
	c: C;
}

/** A run's need: `value`, weighted by the run's age, recent when it ended within the floor window. */
function need(r: RunSummary, ctx: Context, value: number, raised: boolean, limit: number | null): Need {
	const age = Math.max(0, ctx.o.now - r.endedAt);
	return { value, weight: 2 ** (-age / ctx.c.halfLifeMs), recent: age <= ctx.c.floorWindowMs, raised, limit, durationMs: r.durationMs };
}

function recommend(spec: Spec, needs: Need[], ctx: Context, extra: { floor: number; why: string } | null): Recommendation {
	const { c } = ctx;
	const n = needs.length;
	const values = needs.map((x) => x.value);
	const base: Recommendation = {
		resource: spec.resource,
		unit: spec.unit,
		current: ctx.current,
		recommended: null,
		lowerBound: null,
		upperBound: null,
		quantile: spec.q,
		runs: n,
		confidence: null,
		oomRate: null,
		timeoutRate: null,
		throttledRate: null,
		slackBefore: slack(needs, (x) => x.limit),
		slackAfter: null,
		backtest: null,
		reason: "",
		values: values.slice(0, MAX_VALUES),
	};
	if (n < c.minRuns) {
		base.reason = n === 0 ? `no run measured its ${spec.name} yet` : `only ${n} run${n === 1 ? "" : "s"} measured; ${c.minRuns} are needed to recommend`;
		return base;
	}
	// A typed-array sort is native and numeric: ~10× a sort of objects by a comparator.
	const sortedValues = Float64Array.from(values).sort();
	const wq = weightedQuantile(values, needs, sortedValues, spec.q);
	let rec = wq * spec.factor;
	const raised = needs.filter((x) => x.raised).length;
	const counted = raised === 0 ? "" : ` (${raised === 1 ? spec.raisedAs[0] : `${raised} ${spec.raisedAs[1]}`} counted as a raised lower bound)`;
	let why = `p${Math.round(spec.q * 100)} of ${n} runs' ${spec.name}, weighted by age: ${spec.fmt(wq)}${counted}, × ${spec.factor}`;
	if (spec.floors) {
		let top: Need | null = null;
		for (const x of needs) if (x.recent && (top === null || x.value > top.value)) top = x;
		if (top && top.value > rec) {
			rec = top.value;
			why = `the highest ${spec.name} of a run in the last ${Math.round(c.floorWindowMs / DAY)} days: ${spec.fmt(top.value)}${top.raised ? ` (raised from ${spec.raisedAs[0]})` : ""}`;
		}
	}
	if (extra && extra.floor > rec) {
		rec = extra.floor;
		why = extra.why;
	}
	rec = spec.round(rec);
	const b = quantileBounds(n, spec.q, c.boundLevel);
	const bound = (i: number | null) => (i === null ? null : spec.round(sortedValues[i - 1]! * spec.factor));
	let fails = 0;
	let freedUnitHours: number | null = spec.unitHours && ctx.runs.length > 0 ? 0 : null;
	for (const x of needs) {
		if (x.value > rec) fails++;
		if (freedUnitHours !== null && spec.unitHours && x.limit !== null && x.durationMs !== null) freedUnitHours += spec.unitHours(x.limit - rec, x.durationMs);
	}
	const backtest: Backtest = {
		runs: n,
		oomKilled: spec.fails === "oomKilled" ? fails : 0,
		timedOut: spec.fails === "timedOut" ? fails : 0,
		throttled: spec.fails === "throttled" ? fails : 0,
		freedPerRun: ctx.current === null ? null : ctx.current - rec,
		freedUnitHours,
	};
	return {
		...base,
		recommended: rec,
		lowerBound: bound(b.lower),
		upperBound: bound(b.upper),
		confidence: confidence(sortedValues, rec, spec.q),
		slackAfter: slack(needs, () => rec),
		backtest,
		reason: `${why}, rounded up to ${spec.fmt(rec)}`,
	};
}

/** Mean unused share of a limit over the runs that fitted under it (raised needs are not fits). */
function slack(needs: readonly Need[], limitOf: (x: Need) => number | null): number | null {
	let sum = 0;
	let count = 0;
	for (const x of needs) {
		const l = limitOf(x);
		if (l === null || l <= 0 || x.raised) continue;
		sum += Math.max(0, (l - x.value) / l);
		count++;
	}
	return count === 0 ? null : sum / count;
}

function rate(runs: readonly RunSummary[], is: (r: RunSummary) => boolean | null): number | null {
	let hit = 0;
	let seen = 0;
	for (const r of runs) {
		const v = is(r);
		if (v === null) continue;
		seen++;
		if (v) hit++;
	}
	return seen === 0 ? null : hit / seen;
}

const isThrottled = (r: RunSummary, c: C): boolean | null =>
	r.throttledFraction === null && r.cpuPressure === null ? null : (r.throttledFraction ?? 0) > c.throttledFraction || (r.cpuPressure ?? 0) > c.cpuPressure;

function memory(ctx: Context): Recommendation {
	const { runs, o, c } = ctx;
	const needs: Need[] = [];
	let lastOom: RunSummary | null = null;
	for (const r of runs) {
		if (r.oomKilled) {
			// It needed more than it had: what it used or was allowed, raised.
			const had = Math.max(r.memoryBytes ?? 0, r.limits.memoryBytes ?? 0);
			if (had > 0) needs.push(need(r, ctx, Math.max(had + c.oomBumpBytes, had * c.oomBumpRatio), true, r.limits.memoryBytes));
			if (lastOom === null || r.endedAt > lastOom.endedAt) lastOom = r;
		} else if (r.memoryBytes !== null) {
			needs.push(need(r, ctx, r.memoryBytes, false, r.limits.memoryBytes));
		}
	}
	let hold: { floor: number; why: string } | null = null;
	if (lastOom && o.now - lastOom.endedAt < c.oomHoldMs && lastOom.limits.memoryBytes !== null) {
		const hours = Math.max(0, (o.now - lastOom.endedAt) / HOUR);
		hold = {
			floor: lastOom.limits.memoryBytes,
			why: `held at the ${fmtBytes(lastOom.limits.memoryBytes)} limit of a run OOM-killed ${hours.toFixed(1)} h ago (no lowering for ${c.oomHoldMs / HOUR} h after an OOM)`,
		};
	}
	const rec = recommend(
		{
			resource: "memory",
			name: "peak working set",
			raisedAs: ["an OOM kill", "OOM kills"],
			unit: "bytes",
			q: c.memoryQuantile,
			factor: c.margin,
			round: roundMemory,
			floors: true,
			fails: "oomKilled",
			unitHours: (d, ms) => (d / 2 ** 30) * (ms / HOUR),
			fmt: fmtBytes,
		},
		needs,
		ctx,
		hold,
	);
	rec.oomRate = rate(runs, (r) => r.oomKilled);
	return rec;
}

function cpu(ctx: Context): Recommendation {
	const { runs, c } = ctx;
	const needs: Need[] = [];
	for (const r of runs) {
		if (r.avgCores === null) continue;
		const throttled = isThrottled(r, c) === true;
		needs.push(need(r, ctx, throttled ? Math.max(r.avgCores * c.throttleBump, r.p95Cores ?? 0) : r.avgCores, throttled, r.limits.cpu));
	}
	const rec = recommend(
		{
			resource: "cpu",
			name: "average cores",
			raisedAs: ["a throttled run", "throttled runs"],
			unit: "cores",
			q: c.cpuQuantile,
			factor: c.margin,
			round: roundCores,
			floors: false,
			fails: "throttled",
			unitHours: (d, ms) => d * (ms / HOUR),
			fmt: (v) => `${v.toFixed(2)} cores`,
		},
		needs,
		ctx,
		null,
	);
	rec.throttledRate = rate(runs, (r) => isThrottled(r, c));
	return rec;
}

function timeout(ctx: Context): Recommendation {
	const { runs, c } = ctx;
	const needs: Need[] = [];
	for (const r of runs) {
		// A run stopped by someone (killed) or whose end was not seen says nothing of how long it needed.
		if (r.durationMs === null || r.reason === "killed" || r.reason === "drained" || r.reason === "lost") continue;
		const timedOut = r.reason === "timeout";
		const had = Math.max(r.durationMs, r.limits.timeoutMs ?? 0);
		needs.push(need(r, ctx, timedOut ? had * c.oomBumpRatio : r.durationMs, timedOut, r.limits.timeoutMs));
	}
	const rec = recommend(
		{
			resource: "timeout",
			name: "duration",
			raisedAs: ["a timeout", "timeouts"],
			unit: "ms",
			q: c.timeoutQuantile,
			factor: c.timeoutHeadroom,
			round: roundTimeout,
			floors: true,
			fails: "timedOut",
			unitHours: null,
			fmt: fmtMs,
		},
		needs,
		ctx,
		null,
	);
	rec.timeoutRate = rate(runs, (r) => r.reason === "timeout");
	return rec;
}

function gpuMemory(ctx: Context): Recommendation {
	const { runs, c } = ctx;
	const needs: Need[] = [];
	for (const r of runs) {
		if (r.gpuPeakMiB === null) continue;
		needs.push(need(r, ctx, r.gpuPeakMiB, false, null));
	}
	return recommend(
		{
			resource: "gpuMemory",
			name: "peak GPU memory",
			raisedAs: ["", ""],
			unit: "MiB",
			q: c.memoryQuantile,
			factor: c.margin,
			round: roundGpu,
			floors: true,
			fails: null,
			unitHours: null,
			fmt: (v) => formatBytes(v * MiB),
		},
		needs,
		ctx,
		null,
	);
}

/** Recommendations for one group of runs (newest first), per resource. */
export function recommendAll(runs: readonly RunSummary[], o: Options): Recommendation[] {
	const c = { ...CONSTANTS, ...o.constants } as C;
	const newest = runs[0] ?? null;
	return [
		memory({ runs, current: newest?.limits.memoryBytes ?? null, o, c }),
		cpu({ runs, current: newest?.limits.cpu ?? null, o, c }),
		timeout({ runs, current: newest?.limits.timeoutMs ?? null, o, c }),
		gpuMemory({ runs, current: null, o, c }),
	];
}
