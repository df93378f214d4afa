import type { Claim, Drain, DriverInfo, GpuInfo, GpuView, HiveState, HiveView, HostFacts, StorageStatus } from "@apiary/protocol";

// What the API shows, built from the registry's records: pure, so a view's
// fields are tested without a fleet.

/** A hive as the registry holds it in memory. */
export interface HiveRec {
	id: string;
	instanceId: string;
	state: HiveState;
	version: string;
	host: HostFacts;
	driver: DriverInfo;
	/** `hive start --label k=v`: where placement constraints look. */
	labels: Record<string, string>;
	/** false: the hive refuses placements (`--no-remote-spawn`). */
	remoteSpawn?: boolean;
	/** `hive start --cordon-on-unhealthy-gpu`. */
	cordonOnUnhealthyGpu?: boolean;
	/** Cordoned, draining or drained; null or absent: schedulable. */
	drain?: Drain | null;
	/** Monotonic ms of the last message; null when not heard from since the queen started. */
	lastSeen: number | null;
	lastSeenAt: string | null;
	connected: boolean;
	/**
	 * Said hello on this connection, and its first snapshot (every worker in full) not applied yet:
	 * its GPUs are not free meanwhile, since a worker the queen evicted while the hive was lost may
	 * still hold one, and only that snapshot says so.
	 */
	awaitingSnapshot?: boolean;
	/** Whether the hive can write its state dir, from its last heartbeat. */
	storage?: StorageStatus | null;
	/** The heartbeat interval this queen told it (adaptive heartbeats; 0 or absent: its own tick). */
	paceMs?: number;
	/** When the row was last written (monotonic), to write last_seen_at only now and then. */
	savedMono?: number;
}

/** `nowWall`: for a hive another queen serves, whose last sight this queen knows only as a time. */
export function hiveView(h: HiveRec, counts: { workers: number; gpus: number }, nowMono: number, nowWall?: number): HiveView {
	const seenAt = h.lastSeenAt === null ? Number.NaN : Date.parse(h.lastSeenAt);
	return {
		id: h.id,
		instanceId: h.instanceId,
		state: h.state,
		version: h.version,
		host: h.host,
		driver: h.driver,
		labels: h.labels,
		remoteSpawn: h.remoteSpawn !== false,
		lastSeenAt: h.lastSeenAt,
		lastSeenAgoMs:
			h.lastSeen !== null
				? Math.round(nowMono - h.lastSeen)
				: nowWall !== undefined && Number.isFinite(seenAt)
					? Math.max(0, Math.round(nowWall - seenAt))
					: null,
		connected: h.connected,
		workers: counts.workers,
		gpus: counts.gpus,
		storage: h.storage ?? null,
		drain: h.drain ?? null,
	};
}

export function gpuView(hiveId: string, g: GpuInfo, o: { heldBy: Iterable<string>; claimId: string | null; free: boolean }): GpuView {
	return { ...g, hiveId, free: o.free, heldBy: [...o.heldBy], claimId: o.claimId };
}

/** A claim as the API shows it (without the registry's monotonic expiry). */
export function claimView(c: Claim): Claim {
	return { id: c.id, holder: c.holder, gpus: c.gpus, createdAt: c.createdAt, expiresAt: c.expiresAt };
}
