// The hive ↔ queen socket (ws://QUEEN/v1/hives/connect) and the event stream.
import type { PackedStats } from "./stats-codec.ts";
import type { DriverInfo, ExitRecord, GpuInfo, HostFacts, Snapshot, WorkerInfo } from "./types.ts";

export interface HelloMessage {
	type: "hello";
	hiveId: string;
	instanceId: string;
	version: string;
	host: HostFacts;
	driver: DriverInfo;
	gpus: GpuInfo[];
}

/**
 * A running worker already described in full on this connection: its id and
 * its stats, packed (see stats-codec.ts).
 */
export interface WorkerTick {
	id: string;
	state: "running";
	startedAt: string;
	pid: number | null;
	s: PackedStats | null;
}

/**
 * One per tick: the whole snapshot. Workers are described in full the first
 * time on a connection (and when they exit, until the queen acks the exit);
 * after that a running worker is a WorkerTick.
 */
export interface HeartbeatMessage {
	type: "heartbeat";
	seq: number;
	snapshot: Omit<Snapshot, "workers"> & { workers: (WorkerInfo | WorkerTick)[] };
}

/** Sent at once when a worker spawns or exits, between heartbeats. */
export interface WorkerEventMessage {
	type: "event";
	seq: number;
	event: "worker.spawned" | "worker.exited";
	worker: WorkerInfo;
}

/** A hive stopping on purpose says so, so the queen reports hive.left, not hive.lost. */
export interface ByeMessage {
	type: "bye";
}

export type HiveMessage = HelloMessage | HeartbeatMessage | WorkerEventMessage | ByeMessage;

export interface AckMessage {
	type: "ack";
	seq: number;
}
export interface WelcomeMessage {
	type: "welcome";
	/** Heartbeat interval the queen expects, for the hive's information. */
	staleAfterMs: number;
}
export type QueenMessage = AckMessage | WelcomeMessage;

export const EVENT_TYPES = [
	"hive.joined",
	"hive.stale",
	"hive.lost",
	"hive.restarted",
	"hive.left",
	"worker.spawned",
	"worker.updated",
	"worker.exited",
	"worker.evicted",
	"gpu.updated",
	"claim.created",
	"claim.released",
	"snapshot",
	"stream.lagged",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface QueenEvent {
	id: number;
	type: EventType;
	/** ISO time on the queen's clock. */
	at: string;
	hiveId: string | null;
	workerId: string | null;
	data: unknown;
}

export type HiveState = "ready" | "stale" | "lost" | "unknown" | "left";

export interface HiveView {
	id: string;
	instanceId: string;
	state: HiveState;
	version: string;
	host: HostFacts;
	driver: DriverInfo;
	lastSeenAt: string | null;
	/** ms since the last message, on the queen's clock; null when never seen since the queen started. */
	lastSeenAgoMs: number | null;
	connected: boolean;
	workers: number;
	gpus: number;
}

export type QueenWorkerState = "running" | "exited" | "evicted";

export interface QueenWorkerView extends Omit<WorkerInfo, "state" | "env"> {
	hiveId: string;
	state: QueenWorkerState;
	exit: ExitRecord | null;
}

export interface GpuView extends GpuInfo {
	hiveId: string;
	free: boolean;
	/** Worker ids holding it (assigned via --gpus, or using memory on it). */
	heldBy: string[];
	claimId: string | null;
}

export interface Claim {
	id: string;
	holder: string;
	gpus: { hiveId: string; uuid: string; index: number }[];
	createdAt: string;
	expiresAt: string;
}
