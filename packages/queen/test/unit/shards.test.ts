import type { QueenWorkerView, RunBody, ShardAttempt, ShardView } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { afterAttempt, attemptId, ended, outcome, shardEnv } from "../../src/runs/shards.ts";

const body = (o: Partial<RunBody> = {}): RunBody => ({ command: ["t"], shards: 4, ...o });
const attempt = (result: ShardAttempt["result"], exitCode: number | null = result === "passed" ? 0 : 1, signal: string | null = null): ShardAttempt => ({
	workerId: "w",
	hiveId: "h",
	startedAt: null,
	endedAt: null,
	result,
	exitCode,
	signal,
	durationMs: null,
	avgCores: null,
	peakMemoryBytes: null,
	gpuPeakMemoryMiB: null,
});
const shard = (index: number, state: ShardView["state"], attempts: ShardAttempt[] = []): ShardView => ({ index, state, attempts });

describe("sharded runs", () => {
	it("each shard's environment in the form --shard= takes (1-based), and its attempts' worker ids", () => {
		expect(shardEnv("r-0123abcd", 2, 8)).toEqual({ APIARY_RUN_ID: "r-0123abcd", APIARY_SHARD_INDEX: "2", APIARY_SHARD_COUNT: "8", APIARY_SHARD: "3/8" });
		expect(attemptId("r-0123abcd", 2, 1)).toBe("r-0123abcd-2-1");
	});

	it("how an attempt ended: passed, failed, lost (evicted or lost), cancelled by the run; with its usage", () => {
		const w = (v: Partial<QueenWorkerView>) => ({ id: "w", hiveId: "h1", startedAt: "s", state: "exited", exit: null, ...v }) as QueenWorkerView;
		const exit = (reason: string, exitCode: number | null) => ({
			reason,
			exitCode,
			signal: null,
			endedAt: "e",
			durationMs: 1500,
			peakWorkingSetBytes: 10,
			usage: { cpu: { avgCores: 0.5 }, memory: { peakWorkingSetBytes: 2048 }, gpus: [{ peakMemoryMiB: 300 }, { peakMemoryMiB: null }] },
		});
		expect(ended(attempt(null), w({ exit: exit("exited", 0) as never }))).toMatchObject({
			result: "passed",
			hiveId: "h1",
			durationMs: 1500,
			avgCores: 0.5,
			peakMemoryBytes: 2048,
			gpuPeakMemoryMiB: 300,
		});
		expect(ended(attempt(null), w({ exit: exit("exited", 2) as never })).result).toBe("failed");
		expect(ended(attempt(null), w({ state: "evicted" })).result).toBe("lost");
		expect(ended(attempt(null), w({ exit: exit("lost", null) as never })).result).toBe("lost");
		expect(ended(attempt("cancelled"), w({ exit: exit("killed", null) as never })).result).toBe("cancelled");
	});

	it("lost shards go again up to retries (default 1); failed ones only with retryFailed; a pass after a failure is flaky", () => {
		expect(afterAttempt(shard(0, "running", [attempt("lost")]), body())).toEqual({ state: "waiting", again: true });
		expect(afterAttempt(shard(0, "running", [attempt("lost"), attempt("lost")]), body())).toEqual({ state: "lost", again: false });
		expect(afterAttempt(shard(0, "running", [attempt("lost")]), body({ retries: 0 }))).toEqual({ state: "lost", again: false });
		expect(afterAttempt(shard(0, "running", [attempt("failed")]), body())).toEqual({ state: "failed", again: false });
		expect(afterAttempt(shard(0, "running", [attempt("failed")]), body({ retryFailed: 1 }))).toEqual({ state: "waiting", again: true });
		expect(afterAttempt(shard(0, "running", [attempt("failed"), attempt("passed")]), body({ retryFailed: 1 }))).toEqual({ state: "flaky", again: false });
		// A lost attempt does not make a pass flaky.
		expect(afterAttempt(shard(0, "running", [attempt("lost"), attempt("passed")]), body())).toEqual({ state: "passed", again: false });
		expect(afterAttempt(shard(0, "running", [attempt("cancelled")]), body())).toEqual({ state: "cancelled", again: false });
	});

	it("the run's exit code: 0 (flaky included), the lowest failed shard's code, 4 lost, 3 could not place, 130 cancelled; running while any shard is", () => {
		const r = (shards: ShardView[], message: string | null = null) => ({ shards, message });
		expect(outcome(r([shard(0, "passed"), shard(1, "running")]), false)).toEqual({ state: "running", exitCode: null });
		expect(outcome(r([shard(0, "passed"), shard(1, "flaky")]), false)).toEqual({ state: "passed", exitCode: 0 });
		expect(outcome(r([shard(0, "passed"), shard(1, "failed", [attempt("failed", 7)]), shard(2, "failed", [attempt("failed", 5)])]), false)).toEqual({
			state: "failed",
			exitCode: 7,
		});
		expect(outcome(r([shard(0, "failed", [attempt("failed", null, "SIGKILL")])]), false).exitCode).toBe(137);
		expect(outcome(r([shard(0, "passed"), shard(1, "lost", [attempt("lost")])]), false)).toEqual({ state: "failed", exitCode: 4 });
		expect(outcome(r([shard(0, "cancelled")], "could not be placed"), false)).toEqual({ state: "failed", exitCode: 3 });
		expect(outcome(r([shard(0, "passed"), shard(1, "cancelled")]), true)).toEqual({ state: "cancelled", exitCode: 130 });
	});
});
