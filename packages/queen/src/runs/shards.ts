import type { QueenWorkerView, RunBody, RunView, ShardAttempt, ShardView } from "@apiary/protocol";

// Sharded runs as pure rules: how an attempt ended, whether a shard goes
// again (lost: up to `retries`; failed: up to `retryFailed`, and a pass after
// a failure is flaky, as Kubernetes' backoffLimitPerIndex and CI matrices
// report it), and what the run as a whole comes to, with the exit code a CI
// step gets.

export const COULD_NOT_PLACE = 3;
export const LOST = 4;
export const CANCELLED = 130;
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

/** The worker id of shard `i`'s attempt `a` (1-based). */
export const attemptId = (runId: string, i: number, a: number) => `${runId}-${i}-${a}`;

/** An attempt being placed: its worker id known, nothing else yet. */
export const newAttempt = (workerId: string): ShardAttempt => ({
	workerId,
	hiveId: null,
	startedAt: null,
	endedAt: null,
	result: null,
	exitCode: null,
	signal: null,
	durationMs: null,
	avgCores: null,
	peakMemoryBytes: null,
	gpuPeakMemoryMiB: null,
});

/** A shard's environment: what vitest, jest and playwright take as --shard=$APIARY_SHARD. */
export function shardEnv(runId: string, i: number, n: number): Record<string, string> {
	return { APIARY_RUN_ID: runId, APIARY_SHARD_INDEX: String(i), APIARY_SHARD_COUNT: String(n), APIARY_SHARD: `${i + 1}/${n}` };
}

/** How an attempt's worker ended, from its view once it is no longer running. */
export function ended(a: ShardAttempt, w: QueenWorkerView): ShardAttempt {
	const e = w.exit;
	const lost = w.state === "evicted" || e?.reason === "lost";
	// Stopped by the run (fail-fast, a cancel): marked so before the stop was sent.
	const result = a.result === "cancelled" ? "cancelled" : lost ? "lost" : e?.exitCode === 0 ? "passed" : "failed";
	const gpuPeaks = (e?.usage?.gpus ?? []).map((g) => g.peakMemoryMiB).filter((x): x is number => x !== null);
	return {
		...a,
		hiveId: w.hiveId,
		startedAt: w.startedAt,
		endedAt: e?.endedAt ?? e?.endedBefore ?? null,
		result,
		exitCode: e?.exitCode ?? null,
		signal: e?.signal ?? null,
		durationMs: e?.durationMs ?? null,
		avgCores: e?.usage?.cpu.avgCores ?? null,
		peakMemoryBytes: e?.usage?.memory.peakWorkingSetBytes ?? e?.peakWorkingSetBytes ?? null,
		gpuPeakMemoryMiB: gpuPeaks.length ? Math.max(...gpuPeaks) : null,
	};
}

/** After a shard's last attempt ended: its state, and whether it goes again. */
export function afterAttempt(s: ShardView, body: RunBody): { state: ShardView["state"]; again: boolean } {
	const last = s.attempts.at(-1);
	if (!last || last.result === null) return { state: s.state, again: false };
	const count = (r: ShardAttempt["result"]) => s.attempts.filter((a) => a.result === r).length;
	switch (last.result) {
		case "passed":
			return { state: count("failed") > 0 ? "flaky" : "passed", again: false };
		case "lost":
			return count("lost") <= (body.retries ?? 1) ? { state: "waiting", again: true } : { state: "lost", again: false };
		case "failed":
			return count("failed") <= (body.retryFailed ?? 0) ? { state: "waiting", again: true } : { state: "failed", again: false };
		default:
			return { state: "cancelled", again: false };
	}
}

const codeOf = (a: ShardAttempt | undefined) => (a?.exitCode ?? (a?.signal ? 128 + (SIGNALS[a.signal] ?? 0) : 1)) || 1;

/** The run's state and exit code once no shard waits or runs; running (null code) before. */
export function outcome(r: Pick<RunView, "shards" | "message">, cancelled: boolean): { state: RunView["state"]; exitCode: number | null } {
	if (r.shards.some((s) => s.state === "waiting" || s.state === "running")) return { state: "running", exitCode: null };
	const failed = r.shards.find((s) => s.state === "failed");
	if (failed) return { state: "failed", exitCode: codeOf(failed.attempts.at(-1)) };
	if (r.shards.some((s) => s.state === "lost")) return { state: "failed", exitCode: LOST };
	if (r.shards.some((s) => s.state === "cancelled"))
		return cancelled ? { state: "cancelled", exitCode: CANCELLED } : { state: "failed", exitCode: COULD_NOT_PLACE };
	return { state: "passed", exitCode: 0 };
}
