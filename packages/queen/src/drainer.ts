import type { Registry } from "./registry.ts";
import type { HiveCommander } from "./hive-commands.ts";

// Drains carried out: at a draining hive's deadline its workers still
// running are stopped as every stop is (stop signal, grace, SIGKILL; exit
// reason `drained`), and the hive is `drained` once none is left. Each queen
// stops the workers of the hives connected to it (only it has their socket);
// any queen marks a hive drained, under the fleet-wide lock.

export interface DrainerOptions {
	/** Whether a hive is connected to this queen's socket. */
	isLocal: (hiveId: string) => boolean;
	intervalMs?: number;
	log?: (msg: string, extra?: object) => void;
}

export class Drainer {
	private readonly registry: Registry;
	private readonly commands: HiveCommander;
	private readonly o: Required<DrainerOptions>;
	/** Stops sent and not yet answered, by hive/worker: one at a time each. */
	private readonly stopping = new Set<string>();
	private timer: NodeJS.Timeout | null = null;
	private busy = false;

	constructor(registry: Registry, commands: HiveCommander, o: DrainerOptions) {
		this.registry = registry;
		this.commands = commands;
		this.o = { intervalMs: 1000, log: () => {}, ...o };
	}

	start(): void {
		this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
		this.timer.unref();
	}

	close(): void {
		if (this.timer) clearInterval(this.timer);
	}

	async tick(): Promise<void> {
		if (this.busy) return;
		this.busy = true;
		try {
			const now = Date.now();
			for (const { id, drain } of this.registry.draining()) {
				const running = this.registry.runningOn(id);
				if (running.length === 0) {
					await this.registry.exclusive(() => this.registry.changeDrain(id, { op: "drained" }));
					continue;
				}
				if (drain.deadline === null || Date.parse(drain.deadline) > now || !this.o.isLocal(id)) continue;
				for (const workerId of running) this.stop(id, workerId, drain.by);
			}
		} catch (err) {
			this.o.log("drain check failed", { err: String(err) });
		} finally {
			this.busy = false;
		}
	}

	private stop(hiveId: string, workerId: string, by: string | null): void {
		const k = `${hiveId}/${workerId}`;
		if (this.stopping.has(k)) return;
		this.stopping.add(k);
		this.o.log("drain deadline passed: stopping worker", { hiveId, workerId });
		this.commands
			.command(hiveId, { op: "stop", workerId, reason: "drained", by: { tokenId: null, name: by ?? "drain" } })
			.then(
				(r) => {
					if (r.status !== 200) this.o.log("drain stop failed", { hiveId, workerId, status: r.status, error: r.error });
				},
				(err) => this.o.log("drain stop failed", { hiveId, workerId, err: String(err) }),
			)
			.finally(() => this.stopping.delete(k));
	}
}
