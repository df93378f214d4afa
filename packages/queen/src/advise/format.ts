import type { Recommendation, RecommendationsAnswer } from "@apiary/protocol";
import { formatBytes, formatDuration } from "@apiary/protocol/units";
import { table } from "../format.ts";

// `queen advise`: one block per group, a row per resource — current →
// recommended, how sure, how often it failed, what the backtest says — and
// the reason under it, so a CI owner reads it at a glance.

const NAMES: Record<Recommendation["resource"], string> = { memory: "memory", cpu: "cpu", timeout: "timeout", gpuMemory: "gpu memory" };

function value(r: Recommendation, v: number | null): string {
	if (v === null) return "-";
	switch (r.unit) {
		case "bytes":
			return formatBytes(v);
		case "cores":
			return `${Number(v.toFixed(2))} cores`;
		case "ms":
			return formatDuration(v);
		case "MiB":
			return formatBytes(v * 2 ** 20);
	}
}

const pct = (v: number | null) => (v === null ? "-" : `${(v * 100).toFixed(v > 0 && v < 0.01 ? 2 : 1)}%`);

function failures(r: Recommendation): string {
	if (r.resource === "memory") return `OOM ${pct(r.oomRate)}`;
	if (r.resource === "timeout") return `timed out ${pct(r.timeoutRate)}`;
	if (r.resource === "cpu") return `throttled ${pct(r.throttledRate)}`;
	return "";
}

function backtest(r: Recommendation): string {
	const b = r.backtest;
	if (!b) return "-";
	const hit =
		r.resource === "memory"
			? `${b.oomKilled} of ${b.runs} OOM-killed`
			: r.resource === "timeout"
				? `${b.timedOut} of ${b.runs} timed out`
				: r.resource === "cpu"
					? `${b.throttled} of ${b.runs} throttled`
					: `${r.values.filter((v) => v > r.recommended!).length} of ${b.runs} above`;
	const freed = b.freedPerRun !== null && b.freedPerRun > 0 ? `; frees ${value(r, b.freedPerRun)} per worker` : "";
	return `${hit}${freed}`;
}

/** `filtered`: the request named a profile or label (so no group may mean no match, not no runs). */
export function formatAdvice(a: RecommendationsAnswer, filtered = false): string {
	if (a.groups.length === 0)
		return filtered
			? "no runs match that profile or label (queen advise without filters lists every group)\n"
			: "no runs recorded yet (right-sizing learns from workers' exit records)\n";
	const blocks = a.groups.map((g) => {
		const labels = Object.entries(g.labels).map(([k, v]) => `${k}=${v}`);
		const head = `${[`profile ${g.profile ?? "(none)"}`, ...labels].join("  ")}  —  ${g.runs} run${g.runs === 1 ? "" : "s"}, last ${g.lastRunAt?.replace("T", " ").slice(0, 16) ?? "-"}`;
		const rows = [["RESOURCE", "CURRENT", "", "RECOMMENDED", "CONFIDENCE", "FAILURES", "BACKTEST"]];
		for (const r of g.recommendations) {
			rows.push([
				NAMES[r.resource],
				value(r, r.current),
				"→",
				r.recommended === null ? "none yet" : value(r, r.recommended),
				pct(r.confidence),
				failures(r),
				backtest(r),
			]);
		}
		const why = g.recommendations.map((r) => `  ${NAMES[r.resource]}: ${r.reason}`).join("\n");
		return `${head}\n${table(rows)
			.split("\n")
			.map((l) => (l ? `  ${l}` : l))
			.join("\n")}${why}\n`;
	});
	return `${blocks.join("\n")}\nRecommendations only: nothing is applied. Fewer than ${a.minRuns} runs gives none.\n`;
}
