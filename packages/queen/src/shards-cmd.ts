import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { IncomingMessage } from "node:http";
import type { PlacementBody, RunBody, RunView } from "@apiary/protocol";
import { formatBytes, formatDuration } from "@apiary/protocol/units";
import { UsageError } from "@apiary/kit/cli";
import { call, ClientError, open } from "@apiary/kit/client";
import { table } from "./format.ts";

// `queen run --shards N`: one command as N shards over the fleet (POST
// /v1/runs), every shard's output on stdout as it comes, each line prefixed
// `[i/N] ` (a line is never mixed with another shard's), a table of how each
// shard went on stderr, and one exit code for the CI step.

export interface ShardFlags {
	shards: number;
	maxParallel?: number;
	failFast?: boolean;
	retries?: number;
	retryFailed?: number;
	key?: string;
	output?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SIG_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

export async function runShards(
	placement: PlacementBody,
	f: ShardFlags,
	base: string,
	token: string | null,
	out: (s: string) => void,
	err: (s: string) => void,
): Promise<number> {
	const { id, claimId, holder, idempotencyKey: _k, ...rest } = placement;
	if (id !== undefined) throw new UsageError("queen run: --id names one worker; a sharded run names its shards itself (RUN-i-attempt)");
	if (claimId !== undefined || holder !== undefined) throw new UsageError("queen run: --claim places one worker; it does not go with --shards");
	const body: RunBody = {
		...rest,
		shards: f.shards,
		...(f.maxParallel !== undefined ? { maxParallel: f.maxParallel } : {}),
		...(f.failFast ? { failFast: true } : {}),
		...(f.retries !== undefined ? { retries: f.retries } : {}),
		...(f.retryFailed !== undefined ? { retryFailed: f.retryFailed } : {}),
		...(f.key !== undefined ? { idempotencyKey: f.key } : {}),
	};
	if (f.output) mkdirSync(f.output, { recursive: true });
	let run = await call<RunView>(base, "POST", "/v1/runs", body, token);
	const n = run.body.shards;
	err(`queen run: run ${run.id}, ${n} shards${f.key ? ` (key ${f.key})` : ""}\n`);
	let stopping: NodeJS.Signals | null = null;
	const onSignal = (sig: NodeJS.Signals) => {
		if (stopping) return;
		stopping = sig;
		err(`queen run: ${sig}: stopping run ${run.id} (every shard gracefully)\n`);
		call(base, "DELETE", `/v1/runs/${run.id}`, undefined, token).catch((e) => err(`queen run: stopping failed: ${(e as Error).message}\n`));
	};
	process.on("SIGINT", onSignal);
	process.on("SIGTERM", onSignal);
	const followed = new Map<string, Promise<void>>();
	const giveUp = new AbortController();
	try {
		for (;;) {
			for (const s of run.shards)
				for (const a of s.attempts)
					if (a.hiveId && !followed.has(a.workerId))
						followed.set(
							a.workerId,
							follow(base, token, a.workerId, a.hiveId, `[${s.index + 1}/${n}] `, out, f.output ? join(f.output, `shard-${s.index}.log`) : null, {
								signal: giveUp.signal,
								lost: () => attemptOf(run, a.workerId)?.result === "lost",
							}),
						);
			if (run.state !== "running") break;
			await sleep(300);
			run = await call<RunView>(base, "GET", `/v1/runs/${run.id}`, undefined, token).catch((e) => {
				if (e instanceof ClientError && e.status >= 400 && e.status < 500) throw e;
				return run; // the queen is away for a moment: ask again
			});
		}
		// Each shard's output to its end (bounded: a relay that hangs does not hold the step).
		let timer: NodeJS.Timeout | undefined;
		await Promise.race([Promise.all(followed.values()), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
		clearTimeout(timer);
	} finally {
		giveUp.abort();
		process.off("SIGINT", onSignal);
		process.off("SIGTERM", onSignal);
	}
	err(summary(run));
	if (run.message) err(`queen run: ${run.message}\n`);
	if (stopping) return SIG_EXIT[stopping] ?? 130;
	return run.exitCode ?? 1;
}

/** One shard's output, each line prefixed, and (--output) all of it in its file. A relay that
 * fails (the hive moving to another queen, a queen gone) is opened again at the byte it reached,
 * so nothing is printed twice or lost; the caller bounds how long it waits for the end. */
async function follow(
	base: string,
	token: string | null,
	workerId: string,
	hiveId: string,
	prefix: string,
	out: (s: string) => void,
	file: string | null,
	{ signal, lost }: { signal: AbortSignal; lost: () => boolean },
): Promise<void> {
	const decoder = new TextDecoder();
	let partial = "";
	let offset = 0;
	for (let tries = 0; tries < 60 && !signal.aborted; tries++) {
		if (tries) await sleep(500);
		let res: IncomingMessage;
		try {
			res = await open(base, "GET", `/v1/workers/${workerId}/logs?hive=${encodeURIComponent(hiveId)}&follow=true&offset=${offset}`, undefined, token, signal);
		} catch {
			if (lost()) break;
			continue; // the queen is away for a moment
		}
		const status = res.statusCode ?? 0;
		if (status >= 300) {
			res.resume();
			// The hive between queens: again; a hive gone with the worker (lost), or no such worker or log: the run's state says how it ended.
			if (status >= 500 && !lost()) continue;
			break;
		}
		let cut = false;
		try {
			for await (const chunk of res) {
				const bytes = chunk as Uint8Array;
				offset += bytes.length;
				if (file) appendFileSync(file, bytes);
				const text = partial + decoder.decode(bytes, { stream: true });
				const lines = text.split("\n");
				partial = lines.pop() ?? "";
				if (lines.length) out(lines.map((l) => `${prefix}${l}\n`).join(""));
			}
		} catch {
			cut = true;
		}
		if (!cut && res.complete) break;
	}
	if (partial) out(`${prefix}${partial}\n`);
}

const attemptOf = (run: RunView, workerId: string) => run.shards.flatMap((s) => s.attempts).find((a) => a.workerId === workerId);

function summary(run: RunView): string {
	const n = run.body.shards;
	const rows = run.shards.map((s) => {
		const a = s.attempts.at(-1);
		const result = s.state === "failed" ? `failed (${a?.exitCode ?? a?.signal ?? "?"})` : s.state === "running" || s.state === "waiting" ? s.state : s.state;
		return [
			`${s.index + 1}/${n}`,
			a?.hiveId ?? "-",
			result,
			String(s.attempts.length),
			a?.durationMs == null ? "-" : formatDuration(a.durationMs),
			a?.avgCores == null ? "-" : a.avgCores.toFixed(2),
			a?.peakMemoryBytes == null ? "-" : formatBytes(a.peakMemoryBytes),
			a?.gpuPeakMemoryMiB == null ? "-" : `${a.gpuPeakMemoryMiB} MiB`,
		];
	});
	return `\nrun ${run.id}: ${run.state}\n${table([["SHARD", "HIVE", "RESULT", "ATTEMPTS", "DURATION", "AVG CPU", "PEAK MEM", "GPU PEAK MEM"], ...rows])}`;
}

export const RUNS_HELP = (d: string) => `Usage: queen runs [--state running|passed|failed|cancelled] [--json]

Sharded runs (queen run --shards), newest first.

  --state S          only runs in this state
  --json             print JSON
  --queen URL        queen (default $APIARY_QUEEN or ${d})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`;

export function formatRuns(runs: RunView[]): string {
	const count = (r: RunView, st: string) => r.shards.filter((s) => s.state === st).length;
	return table([
		["RUN", "STATE", "SHARDS", "PASSED", "FAILED", "FLAKY", "CREATED", "COMMAND"],
		...runs.map((r) => [
			r.id,
			r.state + (r.exitCode !== null ? ` (${r.exitCode})` : ""),
			String(r.shards.length),
			String(count(r, "passed")),
			String(count(r, "failed") + count(r, "lost")),
			String(count(r, "flaky")),
			r.createdAt.slice(0, 19),
			r.body.command.join(" ").slice(0, 60),
		]),
	]);
}
