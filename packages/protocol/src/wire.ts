// The hive ↔ queen socket (ws://QUEEN/v1/hives/connect) and the event stream,
// each message and view declared once: the schema validates, Static<> types.
import { Type } from "@sinclair/typebox";
import { Nullable, type Static, StringEnum } from "./schema.ts";
import { EVENT_TYPES } from "./event-types.ts";
import { LogsQuery, SpawnBody } from "./api.ts";
import { Actor, DriverInfo, ExitRecord, GpuInfo, HostFacts, Id, Labels, Snapshot, StorageStatus, WorkerInfo } from "./types.ts";

/** A command's id, chosen by the queen. */
export const CommandId = Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" });

export const HelloMessage = Type.Object({
	type: Type.Literal("hello"),
	hiveId: Id,
	instanceId: Type.String({ maxLength: 64 }),
	version: Type.String({ maxLength: 64 }),
	host: HostFacts,
	driver: DriverInfo,
	gpus: Type.Array(GpuInfo, { maxItems: 1024 }),
	labels: Type.Optional(Labels),
	remoteSpawn: Type.Optional(Type.Boolean({ description: "false: started with --no-remote-spawn, refuses the queen's spawn commands" })),
	cordonOnUnhealthyGpu: Type.Optional(
		Type.Boolean({ description: "hive start --cordon-on-unhealthy-gpu: the queen cordons it (reason auto:…) while one of its GPUs is unhealthy" }),
	),
});
export type HelloMessage = Static<typeof HelloMessage>;

/**
 * Stats packed as one positional array (stats-codec.ts). Items are checked by
 * unpackStats, which maps each position to its field and types it: checking
 * them here too was 1/3 of a heartbeat's validation, twice over.
 */
export const PackedStats = Type.Array(Type.Unknown(), { minItems: 28, maxItems: 64 });
export type PackedStats = Static<typeof PackedStats>;

/** A running worker already described in full on this connection: its id and its stats, packed. */
export const WorkerTick = Type.Object({
	id: Id,
	state: Type.Literal("running"),
	startedAt: Type.String({ maxLength: 64 }),
	pid: Nullable(Type.Integer()),
	s: Nullable(PackedStats),
});
export type WorkerTick = Static<typeof WorkerTick>;

/**
 * One per tick: the whole snapshot. Workers are described in full the first
 * time on a connection (and when they exit, until the queen acks the exit);
 * after that a running worker is a WorkerTick.
 */
export const HeartbeatMessage = Type.Object({
	type: Type.Literal("heartbeat"),
	seq: Type.Integer({ minimum: 0 }),
	snapshot: Type.Composite([
		Type.Omit(Snapshot, ["workers"]),
		Type.Object({ workers: Type.Array(Type.Union([WorkerTick, WorkerInfo]), { maxItems: 10_000 }) }),
	]),
});
export type HeartbeatMessage = Static<typeof HeartbeatMessage>;

/** Sent at once when a worker spawns or exits, between heartbeats. */
export const WorkerEventMessage = Type.Object({
	type: Type.Literal("event"),
	seq: Type.Integer({ minimum: 0 }),
	event: StringEnum(["worker.spawned", "worker.exited"] as const),
	worker: WorkerInfo,
});
export type WorkerEventMessage = Static<typeof WorkerEventMessage>;

/** A hive stopping on purpose says so, so the queen reports hive.left, not hive.lost. */
export const ByeMessage = Type.Object({ type: Type.Literal("bye") });
export type ByeMessage = Static<typeof ByeMessage>;

/** The answer to a queen command: an HTTP-like status, and the body or the error's message. */
export const ReplyMessage = Type.Object({
	type: Type.Literal("reply"),
	id: CommandId,
	status: Type.Integer({ minimum: 100, maximum: 599 }),
	body: Type.Optional(Type.Unknown()),
	error: Type.Optional(Type.String({ maxLength: 4096 })),
});
export type ReplyMessage = Static<typeof ReplyMessage>;

/** Output of a worker for a `logs` command, in order; the command's reply ends it. */
export const LogChunkMessage = Type.Object({ type: Type.Literal("log"), id: CommandId, data: Type.String({ maxLength: 1 << 22, description: "base64" }) });
export type LogChunkMessage = Static<typeof LogChunkMessage>;

/** Every message a hive may send, by its `type`. */
export const HIVE_MESSAGES = {
	hello: HelloMessage,
	heartbeat: HeartbeatMessage,
	event: WorkerEventMessage,
	bye: ByeMessage,
	reply: ReplyMessage,
	log: LogChunkMessage,
} as const;
export type HiveMessage = HelloMessage | HeartbeatMessage | WorkerEventMessage | ByeMessage | ReplyMessage | LogChunkMessage;

export const AckMessage = Type.Object({
	type: Type.Literal("ack"),
	seq: Type.Integer(),
	heartbeatMs: Type.Optional(Type.Integer({ minimum: 0, description: "a new heartbeat interval: send heartbeats no more often than this (0: every tick)" })),
});
export type AckMessage = Static<typeof AckMessage>;
export const WelcomeMessage = Type.Object({
	type: Type.Literal("welcome"),
	staleAfterMs: Type.Number({ description: "how long a silent hive stays ready (for this hive, with its heartbeat interval)" }),
	heartbeatMs: Type.Optional(
		Type.Integer({
			minimum: 0,
			description:
				"send heartbeats no more often than this (0: every tick), so the queen's intake stays under its --max-heartbeats-per-second; spawns, exits, bye and replies are never held back",
		}),
	),
	credential: Type.Optional(
		Type.String({ description: "enrolment: this hive's own secret, bound to its id; it keeps it in its state dir and uses it from now on" }),
	),
});
export type WelcomeMessage = Static<typeof WelcomeMessage>;

/**
 * Queen → hive commands for placement, each answered by one `reply` with
 * the same id (the hive validates them exactly as its own API does).
 */
export const SpawnCommand = Type.Object({ type: Type.Literal("command"), id: CommandId, op: Type.Literal("spawn"), body: SpawnBody });
export const StopCommand = Type.Object({
	type: Type.Literal("command"),
	id: CommandId,
	op: Type.Literal("stop"),
	workerId: Id,
	by: Type.Optional(Actor),
	reason: Type.Optional(StringEnum(["killed", "drained"] as const, { description: "the exit record's reason (drained: its hive's drain deadline)" })),
});
/** `queen gpu clear UUID`: the hive forgets the GPU's latched health causes (those still present come back at the next reading). */
export const GpuClearCommand = Type.Object({
	type: Type.Literal("command"),
	id: CommandId,
	op: Type.Literal("gpu-clear"),
	uuid: Type.String({ maxLength: 128 }),
});
export const LogsCommand = Type.Object({ type: Type.Literal("command"), id: CommandId, op: Type.Literal("logs"), workerId: Id, query: LogsQuery });
/** The queen no longer wants a command's answer (a relayed log reader went away). */
export const CancelMessage = Type.Object({ type: Type.Literal("cancel"), id: CommandId });
/** Log bytes a hive may send a `logs` command beyond what the queen has credited (before any credit: this many). */
export const LOG_WINDOW = 4 << 20;
/**
 * Flow control of a `logs` command: the hive may send chunks totalling `upTo`
 * bytes (decoded) in all, and waits for the next credit past it. The queen
 * grants more as its reader takes what it holds, so it never buffers more than
 * LOG_WINDOW whatever the links' speeds; a hive that sends past its credit is
 * cancelled. A count, not pause/resume: what is in flight cannot overrun it.
 */
export const CreditMessage = Type.Object({ type: Type.Literal("credit"), id: CommandId, upTo: Type.Integer({ minimum: 0 }) });
export type CreditMessage = Static<typeof CreditMessage>;
export const CommandMessage = Type.Union([SpawnCommand, StopCommand, LogsCommand, GpuClearCommand]);
export type CommandMessage = Static<typeof CommandMessage>;
export type CancelMessage = Static<typeof CancelMessage>;
/**
 * A shorter heartbeat interval, told at once rather than at the hive's next
 * ack (which may be one long interval away): hives left, or the queen caught
 * up. A hive that does not know this message keeps its interval until then.
 */
export const PaceMessage = Type.Object({
	type: Type.Literal("pace"),
	heartbeatMs: Type.Integer({ minimum: 0, description: "send heartbeats no more often than this (0: every tick)" }),
});
export type PaceMessage = Static<typeof PaceMessage>;
export type QueenMessage = AckMessage | WelcomeMessage | CommandMessage | CancelMessage | CreditMessage | PaceMessage;

export { EVENT_TYPES };
export const EventType = StringEnum(EVENT_TYPES);
export type EventType = Static<typeof EventType>;

export const QueenEvent = Type.Object({
	id: Type.Integer(),
	type: EventType,
	at: Type.String({ description: "ISO time on the queen's clock" }),
	hiveId: Nullable(Type.String()),
	workerId: Nullable(Type.String()),
	data: Type.Unknown(),
});
export type QueenEvent = Static<typeof QueenEvent>;

export const HIVE_STATES = ["ready", "stale", "lost", "unknown", "left"] as const;
export const HiveState = StringEnum(HIVE_STATES);
export type HiveState = Static<typeof HiveState>;

export const DRAIN_STATES = ["cordoned", "draining", "drained"] as const;
/**
 * A hive taken out of rotation: cordoned (no new placements), draining
 * (cordoned, its workers stopped at the deadline) or drained (none left).
 * A reason starting `auto:` is the hive's own (--cordon-on-unhealthy-gpu).
 */
export const Drain = Type.Object({
	state: StringEnum(DRAIN_STATES),
	reason: Nullable(Type.String({ maxLength: 1024 })),
	by: Nullable(Type.String({ maxLength: 128, description: "who: the credential's name, or the hive for an automatic cordon" })),
	at: Type.String({ description: "when it was cordoned or the drain began" }),
	deadline: Nullable(Type.String({ description: "draining: when the workers left are stopped" })),
});
export type Drain = Static<typeof Drain>;

export const HiveView = Type.Object({
	id: Type.String(),
	instanceId: Type.String(),
	state: HiveState,
	version: Type.String(),
	host: HostFacts,
	driver: DriverInfo,
	labels: Labels,
	remoteSpawn: Type.Boolean({ description: "false: started with --no-remote-spawn, the queen places nothing there" }),
	lastSeenAt: Nullable(Type.String()),
	lastSeenAgoMs: Nullable(Type.Number({ description: "ms since the last message, on the queen's clock; null when never seen since the queen started" })),
	connected: Type.Boolean(),
	workers: Type.Integer(),
	gpus: Type.Integer(),
	storage: Type.Optional(Nullable(StorageStatus)),
	drain: Nullable(Drain),
});
export type HiveView = Static<typeof HiveView>;

export const QueenWorkerState = StringEnum(["running", "exited", "evicted"] as const);
export type QueenWorkerState = Static<typeof QueenWorkerState>;

export const QueenWorkerView = Type.Composite([
	Type.Omit(WorkerInfo, ["state", "env", "exit"]),
	Type.Object({ hiveId: Type.String(), state: QueenWorkerState, exit: Nullable(ExitRecord) }),
]);
export type QueenWorkerView = Static<typeof QueenWorkerView>;

export const GpuView = Type.Composite([
	GpuInfo,
	Type.Object({
		hiveId: Type.String(),
		free: Type.Boolean(),
		heldBy: Type.Array(Type.String(), { description: "worker ids holding it (assigned via --gpus, or using memory on it)" }),
		claimId: Nullable(Type.String()),
		migParent: Type.Optional(Nullable(Type.String({ description: "a MIG instance: its GPU's uuid (the instance is placed by its own uuid)" }))),
	}),
]);
export type GpuView = Static<typeof GpuView>;

export const Claim = Type.Object({
	id: Type.String(),
	holder: Type.String(),
	gpus: Type.Array(Type.Object({ hiveId: Type.String(), uuid: Type.String(), index: Type.Integer() })),
	createdAt: Type.String(),
	expiresAt: Type.String(),
});
export type Claim = Static<typeof Claim>;
