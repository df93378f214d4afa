// HTTP bodies, queries and answers, each declared once: the route's schema
// (validation and OpenAPI, responses included) and, through Static<>, its type.
import { Type } from "@sinclair/typebox";
import { ID_PATTERN } from "./ids.ts";
import { MAX_GRACE_MS, MAX_MEMORY_BYTES, MAX_TIMEOUT_MS, MIN_MEMORY_BYTES, STOP_SIGNALS } from "./limits.ts";
import { PROFILE_NAMES } from "./profiles.ts";
import { Nullable, type Static, StringEnum, StringMap } from "./schema.ts";
import { Actor, DriverInfo, HostFacts, Id, Labels, StorageStatus } from "./types.ts";

export const IdParams = Type.Object({ id: Id });
export type IdParams = Static<typeof IdParams>;

/** A label filter, `k=v`. */
export const LabelFilter = Type.String({ pattern: "^[^=]+=.*$", maxLength: 512, description: "k=v" });

/** No NUL byte: argv, env and paths reach execve(2), where a NUL cannot be. */
const NO_NUL = "^[^\\u0000]*$";

/** The spawn body of the hive's API (and of a placement through the queen). */
export const SpawnBody = Type.Object(
	{
		id: Type.Optional(Type.String({ pattern: ID_PATTERN, maxLength: 63, description: "worker id; generated when absent" })),
		command: Type.Array(Type.String({ minLength: 1, maxLength: 65536, pattern: NO_NUL }), {
			minItems: 1,
			maxItems: 4096,
			description: "argv, never a shell string",
		}),
		profile: Type.Optional(StringEnum(PROFILE_NAMES)),
		cpu: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 4096, description: "CPU cores" }))),
		memoryBytes: Type.Optional(
			Nullable(Type.Integer({ minimum: MIN_MEMORY_BYTES, maximum: MAX_MEMORY_BYTES, description: "memory limit, bytes (4 MiB to 1 PiB)" })),
		),
		pids: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 4194304 }))),
		timeoutMs: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: MAX_TIMEOUT_MS, description: "ms, up to 30 days" }))),
		labels: Type.Optional(Labels),
		gpus: Type.Optional(Type.Array(Type.String({ pattern: "^([0-9]{1,3}|GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9a-fA-F-]{8,64})$" }), { maxItems: 64 })),
		env: Type.Optional(StringMap("^[A-Za-z_][A-Za-z0-9_]*$", { maxValueLength: 65536, maxProperties: 256, valuePattern: NO_NUL })),
		cwd: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: "^/[^\\u0000]*$" })),
		stopSignal: Type.Optional(StringEnum(STOP_SIGNALS, { description: "signal that starts a stop (default SIGTERM)" })),
		graceMs: Type.Optional(
			Type.Integer({ minimum: 0, maximum: MAX_GRACE_MS, description: "ms between the stop signal and SIGKILL (default: the hive's --grace, 10 s)" }),
		),
		user: Type.Optional(
			Type.String({ pattern: "^[a-z_][a-z0-9_-]{0,31}$", description: "run as this user: the hive's --worker-user (default) or one of its --allow-user list" }),
		),
		placedBy: Type.Optional(Actor),
	},
	{ additionalProperties: false },
);
export type SpawnBody = Static<typeof SpawnBody>;

export const HiveWorkersQuery = Type.Object(
	{ state: Type.Optional(StringEnum(["running", "exited", "all"] as const)), label: Type.Optional(LabelFilter) },
	{ additionalProperties: false },
);
export type HiveWorkersQuery = Static<typeof HiveWorkersQuery>;

export const LogsQuery = Type.Object(
	{
		follow: Type.Optional(StringEnum(["true", "false", "1", "0"] as const)),
		offset: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$", description: "start at this byte of the current log file" })),
		tail: Type.Optional(Type.String({ pattern: "^[0-9]{1,6}$", description: "only the last N lines (at most 4 MiB), then follow if asked" })),
	},
	{ additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;

export const HiveHealth = Type.Object({
	ok: Type.Boolean(),
	hiveId: Type.String(),
	instanceId: Type.String(),
	version: Type.String(),
	driver: DriverInfo,
	host: Nullable(HostFacts),
	storage: StorageStatus,
});
export type HiveHealth = Static<typeof HiveHealth>;

/** fastify's error body: `{statusCode, error: "Not Found", message}`. */
export const ErrorBody = Type.Object({ statusCode: Type.Integer(), code: Type.Optional(Type.String()), error: Type.String(), message: Type.String() });
export type ErrorBody = Static<typeof ErrorBody>;

// ---- the queen ----------------------------------------------------------------------

export const HiveIdQuery = Type.Object({ hive: Type.Optional(Id) }, { additionalProperties: false });
export type HiveIdQuery = Static<typeof HiveIdQuery>;

export const QueenWorkersQuery = Type.Object(
	{
		hive: Type.Optional(Id),
		state: Type.Optional(StringEnum(["running", "exited", "evicted", "all"] as const)),
		label: Type.Optional(LabelFilter),
		limit: Type.Optional(
			Type.String({
				pattern: "^[1-9][0-9]{0,3}$|^10000$",
				description: "at most this many (1-10000, default 1000); the next page's cursor is in the x-next-cursor header",
			}),
		),
		cursor: Type.Optional(Type.String({ maxLength: 200, pattern: "^[A-Za-z0-9_-]+$", description: "from the previous page's x-next-cursor header" })),
		order: Type.Optional(StringEnum(["id", "recent"] as const, { description: "id: by hive and id, paged (default); recent: newest end first, one page" })),
	},
	{ additionalProperties: false },
);
export type QueenWorkersQuery = Static<typeof QueenWorkersQuery>;

export const GpusQuery = Type.Object(
	{
		free: Type.Optional(StringEnum(["true", "false"] as const)),
		minMemoryMiB: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
		name: Type.Optional(Type.String({ maxLength: 128 })),
		hive: Type.Optional(Id),
	},
	{ additionalProperties: false },
);
export type GpusQuery = Static<typeof GpusQuery>;

export const ClaimBody = Type.Object(
	{
		count: Type.Integer({ minimum: 1, maximum: 1024 }),
		minMemoryMiB: Type.Optional(Type.Integer({ minimum: 0, maximum: 16_777_216 })),
		sameHive: Type.Optional(Type.Boolean()),
		ttlSeconds: Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 }),
		holder: Type.String({ minLength: 1, maxLength: 128 }),
	},
	{ additionalProperties: false },
);
export type ClaimBody = Static<typeof ClaimBody>;

export const ClaimParams = Type.Object({ id: Type.String({ pattern: "^c-[0-9a-f]{12}$" }) });
export type ClaimParams = Static<typeof ClaimParams>;

export const EventsQuery = Type.Object(
	{
		types: Type.Optional(Type.String({ maxLength: 1024, pattern: "^[a-z*.]+(,[a-z*.]+)*$", description: "event types, * wildcards: worker.*,hive.lost" })),
		hive: Type.Optional(Id),
		worker: Type.Optional(Id),
		since: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$", description: "resume after this event id (or the Last-Event-ID header)" })),
		coalesceMs: Type.Optional(
			Type.String({
				pattern: "^[1-9][0-9]{2,4}$|^[1-5][0-9]{5}$|^600000$",
				description:
					"worker.updated at most once per worker per this many ms (100-600000): each worker's latest sample, sent at the window's end; lifecycle events are never held",
			}),
		),
	},
	{ additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

export const QueenHealth = Type.Object({
	ok: Type.Boolean({ description: "false while the queen's store cannot commit (then the answer is a 503)" }),
	version: Type.String(),
	lastEventId: Type.Integer(),
	hives: Type.Integer(),
	store: Type.Object({
		ok: Type.Boolean(),
		error: Nullable(Type.String({ description: "the store's own error, e.g. SQLite's \"database or disk is full\"" })),
		since: Nullable(Type.String()),
	}),
	insecurePlaintext: Type.Optional(Type.Boolean({ description: "listening off loopback without TLS (--insecure-plaintext)" })),
});
export type QueenHealth = Static<typeof QueenHealth>;

// ---- right-sizing -------------------------------------------------------------------

export const RecommendationsQuery = Type.Object(
	{
		profile: Type.Optional(Type.String({ maxLength: 64, description: 'only runs of this profile ("none": runs without one)' })),
		label: Type.Optional(LabelFilter),
	},
	{ additionalProperties: false },
);
export type RecommendationsQuery = Static<typeof RecommendationsQuery>;

export const RESOURCES = ["memory", "cpu", "timeout", "gpuMemory"] as const;
export const Resource = StringEnum(RESOURCES);
export type Resource = Static<typeof Resource>;

const Num = Nullable(Type.Number());

export const Backtest = Type.Object({
	runs: Type.Integer({ description: "the runs replayed under the recommendation (all the group's history)" }),
	oomKilled: Type.Integer({ description: "runs whose peak (or OOM lower bound) is above it" }),
	timedOut: Type.Integer({ description: "runs that ran (or would have run) past it" }),
	throttled: Type.Integer({ description: "runs whose CPU need is above it" }),
	freedPerRun: Nullable(Type.Number({ description: "current − recommended, in the resource's unit, per worker" })),
	freedUnitHours: Nullable(
		Type.Number({ description: "what the runs held and would not have: Σ (limit − recommended) × duration, unit-hours (GiB·h, core·h)" }),
	),
});
export type Backtest = Static<typeof Backtest>;

export const Recommendation = Type.Object({
	resource: Resource,
	unit: StringEnum(["bytes", "cores", "ms", "MiB"] as const),
	current: Nullable(Type.Number({ description: "the limit the newest run had; null: none" })),
	recommended: Nullable(Type.Number({ description: "null: no recommendation (see reason)" })),
	lowerBound: Nullable(Type.Number({ description: "95 % sure the quantile's need is at least this (order statistics), margin applied" })),
	upperBound: Nullable(Type.Number({ description: "95 % sure the quantile's need is at most this; null: too few runs to bound it" })),
	quantile: Type.Number(),
	runs: Type.Integer({ description: "runs with this resource measured" }),
	confidence: Nullable(
		Type.Number({ description: "probability, from order statistics alone, that the quantile's share of runs fits under the recommendation" }),
	),
	oomRate: Num,
	timeoutRate: Num,
	throttledRate: Num,
	slackBefore: Nullable(Type.Number({ description: "mean unused share of the current limit" })),
	slackAfter: Nullable(Type.Number({ description: "mean unused share of the recommendation" })),
	backtest: Nullable(Backtest),
	reason: Type.String(),
	values: Type.Array(Type.Number(), {
		maxItems: 200,
		description: "the newest 200 runs' needs in this unit, newest first: the distribution the dashboard plots",
	}),
});
export type Recommendation = Static<typeof Recommendation>;

export const RecommendationGroup = Type.Object({
	profile: Nullable(Type.String()),
	labels: Type.Record(Type.String(), Type.String(), { description: "the values of the queen's --advise-labels that key this group" }),
	runs: Type.Integer(),
	lastRunAt: Nullable(Type.String()),
	recommendations: Type.Array(Recommendation),
});
export type RecommendationGroup = Static<typeof RecommendationGroup>;

export const RecommendationsAnswer = Type.Object({
	keyLabels: Type.Array(Type.String(), { description: "the labels runs are grouped by, besides the profile (queen start --advise-labels)" }),
	minRuns: Type.Integer(),
	groups: Type.Array(RecommendationGroup),
});
export type RecommendationsAnswer = Static<typeof RecommendationsAnswer>;

// ---- placement ----------------------------------------------------------------------

export const GpuRequest = Type.Object(
	{
		count: Type.Integer({ minimum: 1, maximum: 64 }),
		minMemoryMiB: Type.Optional(Type.Integer({ minimum: 0, maximum: 16_777_216, description: "free memory each GPU must have" })),
		name: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "GPU name contains this, e.g. A100" })),
	},
	{ additionalProperties: false, description: "all on one hive, all or nothing" },
);
export type GpuRequest = Static<typeof GpuRequest>;

/** `POST /v1/workers` on the queen: the hive's spawn body (GPUs aside) plus where to run it. */
export const PlacementBody = Type.Composite(
	[
		// placedBy is the queen's to set (the caller's credential), never the caller's.
		Type.Omit(SpawnBody, ["gpus", "placedBy"]),
		Type.Object({
			hive: Type.Optional(Type.String({ pattern: ID_PATTERN, maxLength: 63, description: "run on this hive" })),
			constraints: Type.Optional(StringMap("^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$", { maxValueLength: 256, maxProperties: 16 })),
			gpus: Type.Optional(GpuRequest),
			claimId: Type.Optional(Type.String({ pattern: "^c-[0-9a-f]{12}$", description: "run on exactly the GPUs of this claim (it stays the holder's)" })),
			holder: Type.Optional(
				Type.String({ minLength: 1, maxLength: 128, description: "with claimId: the claim's holder, as it was created (only its holder places on it)" }),
			),
			waitMs: Type.Optional(
				Type.Integer({ minimum: 0, maximum: 86_400_000, description: "wait for capacity, first come first served, instead of failing at once" }),
			),
			idempotencyKey: Type.Optional(
				Type.String({ minLength: 1, maxLength: 128, description: "a retry with the same key returns the same worker, never a second one" }),
			),
		}),
	],
	{ additionalProperties: false },
);
export type PlacementBody = Static<typeof PlacementBody>;

export const PlacementAnswer = Type.Object({
	hiveId: Type.String(),
	id: Type.String(),
	gpus: Type.Array(Type.String(), { description: "UUIDs, as the worker sees them in CUDA_VISIBLE_DEVICES" }),
	claimId: Nullable(Type.String({ description: "the claim holding the GPUs: made for this worker (released when it exits) or the one passed" })),
});
export type PlacementAnswer = Static<typeof PlacementAnswer>;

export const PendingPlacements = Type.Object({
	pending: Type.Array(Type.Object({ id: Type.String(), waitingMs: Type.Number(), want: Type.String() })),
});
export type PendingPlacements = Static<typeof PendingPlacements>;

export const RelayQuery = Type.Object({ hive: Type.Optional(Type.String({ pattern: ID_PATTERN, maxLength: 63 })) }, { additionalProperties: false });
export const RelayLogsQuery = Type.Composite([LogsQuery, RelayQuery], { additionalProperties: false });
export type RelayLogsQuery = Static<typeof RelayLogsQuery>;

/**
 * A queen → hive command forwarded to the queen the hive is connected to
 * (`POST /v1/hives/:id/commands`, between queens on one database).
 */
export const RelayCommandBody = Type.Union([
	Type.Object({ op: Type.Literal("spawn"), body: SpawnBody }, { additionalProperties: false }),
	Type.Object(
		{
			op: Type.Literal("stop"),
			workerId: Type.String({ pattern: ID_PATTERN, maxLength: 63 }),
			by: Type.Optional(Actor),
			reason: Type.Optional(StringEnum(["killed", "drained"] as const)),
		},
		{ additionalProperties: false },
	),
	Type.Object({ op: Type.Literal("logs"), workerId: Type.String({ pattern: ID_PATTERN, maxLength: 63 }), query: LogsQuery }, { additionalProperties: false }),
	Type.Object({ op: Type.Literal("gpu-clear"), uuid: Type.String({ maxLength: 128 }) }, { additionalProperties: false }),
]);
export type RelayCommandBody = Static<typeof RelayCommandBody>;
/** The hive's reply to a forwarded spawn or stop, as its queen got it. */
export const RelayCommandReply = Type.Object({
	status: Type.Integer(),
	body: Type.Optional(Type.Unknown()),
	error: Type.Optional(Type.String()),
});
export type RelayCommandReply = Static<typeof RelayCommandReply>;

// ---- cordon and drain ----------------------------------------------------------------

const Reason = Type.String({ minLength: 1, maxLength: 1024, pattern: "^[^\\u0000-\\u001f]*$", description: "why, for the operators who see it" });
export const CordonBody = Type.Object({ reason: Type.Optional(Reason) }, { additionalProperties: false });
export type CordonBody = Static<typeof CordonBody>;
export const DrainBody = Type.Object(
	{
		reason: Type.Optional(Reason),
		deadlineSeconds: Type.Optional(
			Type.Integer({ minimum: 0, maximum: 30 * 86_400, description: "workers still running this long after the drain began are stopped (default 3600)" }),
		),
	},
	{ additionalProperties: false },
);
export type DrainBody = Static<typeof DrainBody>;

// ---- sharded runs ---------------------------------------------------------------------

/** `POST /v1/runs`: one command as N shards, each a worker placed as `POST /v1/workers` places one. */
export const RunBody = Type.Composite(
	[
		Type.Omit(PlacementBody, ["id", "claimId", "holder", "idempotencyKey"]),
		Type.Object({
			shards: Type.Integer({ minimum: 1, maximum: 1000 }),
			maxParallel: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: "shards running at once (default: all)" })),
			failFast: Type.Optional(Type.Boolean({ description: "the first failure stops the running shards and cancels the waiting ones" })),
			retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: "times a shard lost with its hive is started again (default 1)" })),
			retryFailed: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: "times a shard that failed is started again (default 0)" })),
			idempotencyKey: Type.Optional(
				Type.String({ minLength: 1, maxLength: 128, description: "a second request with this key attaches to the run it started" }),
			),
		}),
	],
	{ additionalProperties: false },
);
export type RunBody = Static<typeof RunBody>;

export const SHARD_STATES = ["waiting", "running", "passed", "failed", "flaky", "lost", "cancelled"] as const;
export const ShardAttempt = Type.Object({
	workerId: Type.String(),
	hiveId: Nullable(Type.String()),
	startedAt: Nullable(Type.String()),
	endedAt: Nullable(Type.String()),
	/** passed, failed, lost, cancelled; null while it runs. */
	result: Nullable(StringEnum(["passed", "failed", "lost", "cancelled"] as const)),
	exitCode: Nullable(Type.Integer()),
	signal: Nullable(Type.String()),
	durationMs: Nullable(Type.Number()),
	avgCores: Nullable(Type.Number()),
	peakMemoryBytes: Nullable(Type.Number()),
	gpuPeakMemoryMiB: Nullable(Type.Number()),
});
export type ShardAttempt = Static<typeof ShardAttempt>;
export const ShardView = Type.Object({
	index: Type.Integer(),
	state: StringEnum(SHARD_STATES),
	attempts: Type.Array(ShardAttempt),
});
export type ShardView = Static<typeof ShardView>;
export const RUN_STATES = ["running", "passed", "failed", "cancelled"] as const;
export const RunView = Type.Object({
	id: Type.String(),
	state: StringEnum(RUN_STATES),
	createdAt: Type.String(),
	finishedAt: Nullable(Type.String()),
	idempotencyKey: Nullable(Type.String()),
	body: RunBody,
	/** The exit code a CI step gets: 0 all passed (flaky ones too), else the lowest failed shard's code, 3 could not place, 4 lost past its retries, 130 cancelled. */
	exitCode: Nullable(Type.Integer()),
	message: Nullable(Type.String()),
	shards: Type.Array(ShardView),
});
export type RunView = Static<typeof RunView>;
export const RunsQuery = Type.Object({ state: Type.Optional(StringEnum(RUN_STATES)) }, { additionalProperties: false });
export const RunParams = Type.Object({ id: Type.String({ pattern: "^r-[0-9a-f]{8}$" }) });
