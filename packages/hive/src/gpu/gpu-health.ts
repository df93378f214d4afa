import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GpuError, Health, HealthReason } from "@apiary/protocol";
import { type Cause, conditionsOf, HealthBook } from "./health.ts";
import { NvrmParser, parseKmsgRecord, xidSeverity } from "./kmsg.ts";
import { type KmsgCursor, KmsgReader } from "./kmsg-reader.ts";
import { busKey, type GpuReading } from "./nvidia-smi.ts";

// The hive's GPU health: the verdicts of health.ts fed by the nvidia-smi
// readings and the kernel log, latched in <state-dir>/gpu-health.json with
// the boot they were seen in. A new boot id (the host rebooted) forgets the
// latched causes and the log's cursor: what is still wrong is seen again.

export interface GpuHealthOptions {
	stateDir: string;
	/** /proc/sys/kernel/random/boot_id's content (host root injectable). */
	bootId: string | null;
	/** The kernel log (--kmsg); null: not read. */
	kmsg: string | null;
	/** Which GPU a bus key is, from the readings (the kernel log's own GPU lines are tried first). */
	uuidOfBus: (bus: string) => string | null;
	/** An application's Xid, for the worker whose process raised it. */
	onAppError?: (err: GpuError) => void;
	/** A GPU's causes changed (a new one, or one cleared). */
	onChange?: () => void;
	wall?: () => number;
	kmsgPollMs?: number;
	log?: (msg: string, extra?: object) => void;
}

interface Saved {
	bootId: string | null;
	kmsg?: { path: string; cursor: KmsgCursor };
	causes: Record<string, Cause[]>;
}

export class GpuHealth {
	private readonly o: GpuHealthOptions & { wall: () => number; log: (msg: string, extra?: object) => void };
	private readonly file: string;
	private readonly book: HealthBook;
	private readonly busUuid = new Map<string, string>();
	private readonly nvrm = new NvrmParser();
	private reader: KmsgReader | null = null;
	private cursor: KmsgCursor | undefined;
	/** Xid events read, for the bench and /metrics. */
	records = 0;

	constructor(o: GpuHealthOptions) {
		this.o = { wall: () => Date.now(), log: () => {}, ...o };
		this.file = join(o.stateDir, "gpu-health.json");
		const saved = this.load();
		const sameBoot = saved !== null && saved.bootId !== null && saved.bootId === o.bootId;
		if (saved && !sameBoot && Object.keys(saved.causes).length > 0)
			this.o.log("the host rebooted since GPU health causes were latched: forgetting them (what is still wrong is seen again)", {
				gpus: Object.keys(saved.causes),
			});
		this.book = new HealthBook(sameBoot ? saved.causes : {});
		this.cursor = sameBoot && saved.kmsg?.path === o.kmsg ? saved.kmsg.cursor : undefined;
		// Forgotten on disk too, at once: a crash now must not bring them back.
		if (saved && !sameBoot) this.save();
	}

	start(): void {
		if (!this.o.kmsg) return;
		this.reader = new KmsgReader({
			path: this.o.kmsg,
			from: this.cursor,
			pollMs: this.o.kmsgPollMs,
			onLine: (line) => this.onKmsg(line),
			onCursor: (c) => {
				this.cursor = c;
				// Kept with the causes it led to, so a restart does not read them again (an admin's clear would be undone).
				if (this.eventsRead || this.dirty) this.save();
				this.eventsRead = false;
			},
			onUnavailable: (why) => this.o.log(why),
		});
		this.reader.start();
	}

	stop(): void {
		this.reader?.stop();
		if (this.dirty) this.save();
	}

	/** Reads what the kernel log holds now (tests and the bench wait on it). */
	pollKmsg(): Promise<void> {
		return this.reader?.poll() ?? Promise.resolve();
	}

	/** Whether the kernel log is read: null when not asked for or unreadable (Xid health unknown). */
	get kmsgReadable(): boolean {
		return this.reader?.available === true;
	}

	/** A GPU's reading. */
	reading(r: GpuReading): void {
		if (r.busId) {
			const bus = busKey(r.busId);
			if (bus) this.busUuid.set(bus, r.uuid);
		}
		if (this.book.observe(r.uuid, conditionsOf(r), this.o.wall())) this.changed();
	}

	/** nvidia-smi could not reach the GPU at this bus (lost, or an unknown error). */
	unreachable(bus: string, message: string, lost: boolean): void {
		const uuid = this.uuidOf(bus);
		if (!uuid) return;
		this.cause(uuid, { code: lost ? "gpu-lost" : "gpu-unreachable", message: `nvidia-smi: ${message}`, severity: "unhealthy" });
	}

	verdict(uuid: string, hasSignals: boolean): { health: Health | null; healthReasons: HealthReason[] } {
		return this.book.verdict(uuid, hasSignals || this.kmsgReadable);
	}

	/** `queen gpu clear UUID`: returns whether it had causes. */
	clear(uuid: string): boolean {
		const had = this.book.clear(uuid);
		if (had) {
			this.o.log("GPU health causes cleared", { uuid });
			this.changed();
		}
		return had;
	}

	private dirty = false;
	private eventsRead = false;

	private changed(): void {
		this.dirty = true;
		this.save();
		this.o.onChange?.();
	}

	private cause(uuid: string, d: Omit<HealthReason, "since">): void {
		if (this.book.add(uuid, d, new Date(this.o.wall()).toISOString())) {
			this.o.log("GPU health cause", { uuid, ...d });
			this.changed();
		}
	}

	private uuidOf(bus: string): string | null {
		return this.busUuid.get(bus) ?? this.o.uuidOfBus(bus);
	}

	private onKmsg(line: string): void {
		// Every record the parser knows is the driver's (`NVRM: `): the rest of the kernel log, most of it, is
		// passed over without a regex or an object (it cost 2.5× reading the log on one host; the gate failed).
		if (!line.includes("NVRM: ")) return;
		const rec = parseKmsgRecord(line);
		if (!rec) return;
		const e = this.nvrm.parse(rec.text);
		if (!e) return;
		this.records++;
		this.eventsRead = true;
		if (e.kind === "gpu") {
			this.busUuid.set(e.bus, e.uuid);
			return;
		}
		const uuid = this.uuidOf(e.bus);
		if (e.kind === "lost") {
			if (uuid) this.cause(uuid, { code: "gpu-lost", message: `kernel: ${e.message}`, severity: "unhealthy" });
			else this.o.log("a GPU this hive does not know fell off the bus", { bus: e.bus });
			return;
		}
		const sev = xidSeverity(e.xid);
		const at = new Date(this.o.wall()).toISOString();
		if (sev === "application") {
			this.o.onAppError?.({ xid: e.xid, gpu: uuid, at, message: e.message, pid: e.pid });
			return;
		}
		if (!uuid) {
			this.o.log("an Xid for a GPU this hive does not know", { bus: e.bus, xid: e.xid });
			return;
		}
		if (sev === "info") {
			this.o.log("Xid (not held against the GPU)", { uuid, xid: e.xid, message: e.message });
			return;
		}
		this.cause(uuid, { code: `xid-${e.xid}`, message: `Xid ${e.xid}: ${e.message}`, severity: sev });
	}

	private load(): Saved | null {
		try {
			const s = JSON.parse(readFileSync(this.file, "utf8")) as Saved;
			return s && typeof s === "object" && s.causes && typeof s.causes === "object" ? s : null;
		} catch {
			return null;
		}
	}

	private save(): void {
		const s: Saved = {
			bootId: this.o.bootId,
			...(this.o.kmsg && this.cursor ? { kmsg: { path: this.o.kmsg, cursor: this.cursor } } : {}),
			causes: this.book.causes(),
		};
		try {
			writeFileSync(`${this.file}.tmp`, `${JSON.stringify(s)}\n`, { mode: 0o600 });
			renameSync(`${this.file}.tmp`, this.file);
			this.dirty = false;
		} catch (err) {
			// A full disk: kept in memory, written with the next change.
			this.o.log("cannot write the GPU health file", { err: String(err) });
		}
	}
}
