import { randomUUID } from "node:crypto";
import { constants } from "node:os";
import type { PlacementAnswer, PlacementBody, QueenWorkerView } from "@apiary/protocol";
import { parseSize, parseDuration } from "@apiary/protocol/units";
import { checkId } from "@apiary/protocol/ids";
import { convertFlag, keyValues, parseFlags, UsageError } from "@apiary/kit/cli";
import { call, ClientError, failure, open } from "@apiary/kit/client";
import { loadToken } from "@apiary/kit/listen";
import { logsQuery, printLogs } from "@apiary/kit/logs-client";
import { SPAWN_FLAGS, SPAWN_FLAGS_HELP, spawnBodyOf, splitCommand } from "@apiary/kit/spawn-flags";
import { runShards } from "./shards-cmd.ts";

// `queen run`, `queen kill`, `queen logs`: a CI step runs a worker through the
// queen as it would call srun — placed, its output streamed, its exit code
// returned; Ctrl-C stops it gracefully.

/** Exit codes of queen run besides the worker's own (128+n for signal n). */
export const COULD_NOT_PLACE = 3;
export const LOST = 4;

export const RUN_HELP = (defaultQueen: string) => `Usage: queen run [options] -- CMD [ARG...]

Places a worker through the queen, streams its output as it is written, and
exits with its exit code (128+n for signal n; ${COULD_NOT_PLACE}: could not place; ${LOST}: lost with
its hive). Ctrl-C or SIGTERM stops it gracefully (its stop signal, its grace
period) and then exits 130 or 143. A drop-in for srun in a CI step.

  --gpus N           N GPUs, all on one hive (UUIDs in CUDA_VISIBLE_DEVICES)
  --min-memory SIZE  each GPU with at least this much free memory, e.g. 40G
  --gpu-name TEXT    GPU name contains TEXT, e.g. A100
  --claim ID         run on the GPUs of this claim (it stays yours; one worker at a time)
  --holder NAME      with --claim: the claim's holder, as it was created
  --hive ID          run on this hive
  --constraint K=V   only hives with this label (repeatable)
  --wait DURATION    wait this long for capacity, first come first served (default: fail at once)
  --detach           print the worker's id and return once it runs

Sharded (one command as N workers over the fleet, like a Slurm job array;
each shard has APIARY_RUN_ID, APIARY_SHARD_INDEX (0-based), APIARY_SHARD_COUNT
and APIARY_SHARD=i/N, the form vitest, jest and playwright take as --shard):
  --shards N         run N shards; output lines come prefixed [i/N]; a table at the end;
                     exit 0 when all passed (flaky too), else the lowest failed shard's code,
                     ${COULD_NOT_PLACE} could not place, ${LOST} lost past its retries, 130 on Ctrl-C
  --max-parallel K   at most K shards at once (default: all)
  --fail-fast        the first failure stops the others
  --retries R        a shard lost with its hive runs again elsewhere up to R times (default 1)
  --retry-failed R   a failed shard runs again up to R times (one that then passes is flaky)
  --key KEY          a second queen run with this key attaches to the same run
  --output DIR       also each shard's whole output in DIR/shard-<i>.log
  (--wait defaults to 1h for shards: each waits its turn for capacity)
${SPAWN_FLAGS_HELP}
  --json             with --detach: print the placement as JSON
  --queen URL        queen (default $APIARY_QUEEN or ${defaultQueen})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`;

const common = { queen: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" }, "token-file": { type: "string" } } as const;
const queenUrl = (v: string | undefined, d: string) => v ?? process.env.APIARY_QUEEN ?? d;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(argv: string[], defaultQueen: string, out: (s: string) => void, err: (s: string) => void): Promise<number> {
	const { own, command } = splitCommand(argv);
	const { values: v, positionals } = parseFlags("queen run", own, {
		...common,
		...SPAWN_FLAGS,
		gpus: { type: "string" },
		"min-memory": { type: "string" },
		"gpu-name": { type: "string" },
		claim: { type: "string" },
		holder: { type: "string" },
		hive: { type: "string" },
		constraint: { type: "string", multiple: true },
		wait: { type: "string" },
		detach: { type: "boolean" },
		shards: { type: "string" },
		"max-parallel": { type: "string" },
		"fail-fast": { type: "boolean" },
		retries: { type: "string" },
		"retry-failed": { type: "string" },
		key: { type: "string" },
		output: { type: "string" },
	});
	const flag = <T>(name: string, value: string | undefined, conv: (x: string) => T) => convertFlag("queen run", name, value, conv);
	const count = flag("gpus", v.gpus, (x) => {
		if (!/^[1-9][0-9]{0,1}$/.test(x)) throw new Error(`expected a number of GPUs (1-64), got ${JSON.stringify(x)}`);
		return Number(x);
	});
	if (count === undefined && (v["min-memory"] !== undefined || v["gpu-name"] !== undefined))
		throw new UsageError("queen run: --min-memory and --gpu-name go with --gpus N");
	if ((v.claim === undefined) !== (v.holder === undefined)) throw new UsageError("queen run: --claim ID goes with --holder NAME (the claim's holder)");
	const minMemory = flag("min-memory", v["min-memory"], parseSize);
	const body: PlacementBody = {
		...spawnBodyOf("queen run", v, command, positionals),
		hive: flag("hive", v.hive, (x) => checkId(x, "hive")),
		constraints: keyValues("queen run", "constraint", v.constraint),
		gpus: count === undefined ? undefined : { count, minMemoryMiB: minMemory === undefined ? undefined : Math.ceil(minMemory / 2 ** 20), name: v["gpu-name"] },
		claimId: v.claim,
		holder: v.holder,
		waitMs: flag("wait", v.wait, parseDuration),
		// One key per invocation: a retry inside this run never starts a second worker.
		idempotencyKey: randomUUID(),
	};
	const token = loadToken(v["token-file"]);
	const base = queenUrl(v.queen, defaultQueen);
	const int = (name: string, min: number, max: number) =>
		flag(name, v[name as "shards"], (x) => {
			if (!/^[0-9]{1,4}$/.test(x) || Number(x) < min || Number(x) > max)
				throw new Error(`expected a whole number from ${min} to ${max}, got ${JSON.stringify(x)}`);
			return Number(x);
		});
	const shards = int("shards", 1, 1000);
	const sharded = ["max-parallel", "retries", "retry-failed", "key", "output"].filter((x) => v[x as "key"] !== undefined);
	if (shards === undefined && (sharded.length > 0 || v["fail-fast"])) throw new UsageError(`queen run: --${sharded[0] ?? "fail-fast"} goes with --shards N`);
	if (shards !== undefined) {
		if (v.detach) throw new UsageError("queen run: --detach places one worker; with --shards, POST /v1/runs (queen runs lists them)");
		return runShards(
			body,
			{
				shards,
				maxParallel: int("max-parallel", 1, 1000),
				failFast: v["fail-fast"] === true,
				retries: int("retries", 0, 10),
				retryFailed: int("retry-failed", 0, 10),
				key: v.key,
				output: v.output,
			},
			base,
			token,
			out,
			err,
		);
	}
	let placed: PlacementAnswer;
	try {
		placed = await call<PlacementAnswer>(base, "POST", "/v1/workers", body, token);
	} catch (e) {
		if (e instanceof ClientError && (e.status === 409 || e.status === 404)) {
			err(`queen run: could not place: ${e.message}\n`);
			return COULD_NOT_PLACE;
		}
		throw e;
	}
	if (v.detach) {
		out(v.json ? `${JSON.stringify(placed)}\n` : `${placed.id}\n`);
		return 0;
	}
	err(`queen run: ${placed.id} on hive ${placed.hiveId}${placed.gpus.length ? ` with GPUs ${placed.gpus.join(",")}` : ""}\n`);
	const where = `hive=${encodeURIComponent(placed.hiveId)}`;
	let stopping: NodeJS.Signals | null = null;
	let stopped: Promise<unknown> | null = null;
	const onSignal = (sig: NodeJS.Signals) => {
		if (stopping) return;
		stopping = sig;
		err(`queen run: ${sig}: stopping ${placed.id} (its stop signal, then its grace period)\n`);
		stopped = call(base, "DELETE", `/v1/workers/${placed.id}?${where}`, undefined, token).catch((e) =>
			err(`queen run: stopping failed: ${(e as Error).message}\n`),
		);
	};
	process.on("SIGINT", onSignal);
	process.on("SIGTERM", onSignal);
	try {
		const decoder = new TextDecoder();
		let q = "follow=true";
		for (;;) {
			const res = await open(base, "GET", `/v1/workers/${placed.id}/logs?${where}&${q}`, undefined, token).catch(() => null);
			try {
				if (res && (res.statusCode ?? 0) < 300) for await (const chunk of res) out(decoder.decode(chunk as Uint8Array, { stream: true }));
				else if (res) await failure(res); // read and dropped: the state below says what happened
			} catch {
				// The relay was cut (its hive or queen went away): the worker's state below says what happened.
			}
			const w = await settled(base, placed, token);
			if (w === "running") {
				// The stream broke (the hive went away for a while) and the worker runs on: read on from the end.
				q = "follow=true&tail=0";
				await sleep(500);
				continue;
			}
			if (stopped) await stopped;
			if (stopping) return 128 + constants.signals[stopping as keyof typeof constants.signals];
			return exitCodeOf(w, err);
		}
	} finally {
		process.off("SIGINT", onSignal);
		process.off("SIGTERM", onSignal);
	}
}

/** The worker once it is no longer running (or "running" when it still is after a while). */
async function settled(base: string, p: PlacementAnswer, token: string | null): Promise<QueenWorkerView | "running"> {
	for (let i = 0; i < 50; i++) {
		const w = await call<QueenWorkerView>(base, "GET", `/v1/workers/${p.id}?hive=${encodeURIComponent(p.hiveId)}`, undefined, token).catch(() => null);
		if (w && w.state !== "running") return w;
		await sleep(100);
	}
	return "running";
}

function exitCodeOf(w: QueenWorkerView, err: (s: string) => void): number {
	if (w.state === "evicted" || w.exit?.reason === "lost") {
		err(`queen run: ${w.id} was lost with its hive ${w.hiveId}\n`);
		return LOST;
	}
	const e = w.exit!;
	if (e.exitCode !== null) return e.exitCode;
	if (e.signal) return 128 + (constants.signals[e.signal as keyof typeof constants.signals] ?? 0);
	return 1;
}

export const KILL_HELP = (q: string) => `Usage: queen kill ID [--hive ID]

Stops a worker through the queen as hive kill does (its stop signal, its grace
period, then SIGKILL), and prints how it ended.

  --hive ID          the worker's hive (default: the one the queen knows it on)
  --json             print the worker as JSON
  --queen URL        queen (default $APIARY_QUEEN or ${q})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`;

export async function kill(argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parseFlags("queen kill", argv, { ...common, hive: { type: "string" } });
	if (positionals.length !== 1) throw new UsageError("queen kill: expected exactly one worker ID");
	const id = convertFlag("queen kill", "ID", positionals[0], (x) => checkId(x, "ID"))!;
	const q = v.hive ? `?hive=${encodeURIComponent(v.hive)}` : "";
	const base = queenUrl(v.queen, defaultQueen);
	const w = await call<{ id: string; exit: { reason: string; graceful?: boolean | null } | null }>(
		base,
		"DELETE",
		`/v1/workers/${id}${q}`,
		undefined,
		loadToken(v["token-file"]),
	);
	out(
		v.json
			? `${JSON.stringify(w)}\n`
			: `${w.id}: ${w.exit?.reason ?? "stopped"}${w.exit?.graceful ? " (graceful)" : w.exit?.graceful === false ? " (SIGKILL after its grace period)" : ""}\n`,
	);
	return 0;
}

export const LOGS_HELP = (q: string) => `Usage: queen logs ID [-f] [-n N] [--hive ID]

A worker's output, relayed from its hive.

  -f, --follow       keep printing as it is written, until the worker ends
  -n, --tail N       only the last N lines
  --hive ID          the worker's hive (default: the one the queen knows it on)
  --queen URL        queen (default $APIARY_QUEEN or ${q})
  --token-file FILE  bearer token (default $APIARY_TOKEN)`;

export async function logs(argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parseFlags("queen logs", argv, {
		...common,
		hive: { type: "string" },
		follow: { type: "boolean", short: "f" },
		tail: { type: "string", short: "n" },
	});
	if (positionals.length !== 1) throw new UsageError("queen logs: expected exactly one worker ID");
	const id = convertFlag("queen logs", "ID", positionals[0], (x) => checkId(x, "ID"))!;
	const q = logsQuery("queen logs", v);
	if (v.hive) q.set("hive", v.hive);
	await printLogs(queenUrl(v.queen, defaultQueen), id, q, loadToken(v["token-file"]), out);
	return 0;
}
