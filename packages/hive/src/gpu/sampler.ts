import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { GpuInfo, GpuStatus, MigDevice } from "@apiary/protocol";
import type { GpuHealth } from "./gpu-health.ts";
import { hasHealthSignals } from "./health.ts";
import {
	APP_FIELDS,
	type ComputeApp,
	EXIT_MEANING,
	fallbackField,
	GPU_FIELDS,
	type GpuReading,
	busKey,
	handleError,
	invalidField,
	parseComputeApps,
	parseGpuLine,
	parseMigList,
	SIGNAL_FIELDS,
} from "./nvidia-smi.ts";

const MIG_EVERY_MS = 30_000;

export interface GpuSamplerOptions {
	/** nvidia-smi binary (`--nvidia-smi PATH`). */
	binary: string;
	intervalMs: number;
	/** No line for this long: the reader is hung; data is stale and it is restarted. Default 3 intervals (≥ 3 s). */
	stallMs?: number;
	/** Which worker a GPU process belongs to (by cgroup membership). */
	attribute?: (pid: number) => string | null;
	now?: () => number;
	log?: (msg: string, extra?: object) => void;
	/** Health verdicts from the readings (and the kernel log). */
	health?: GpuHealth;
}

interface Seen {
	reading: GpuReading;
	at: number;
}

/**
 * One long-lived `nvidia-smi --query-gpu … --loop-ms=N` child streams GPU
 * readings; a watchdog restarts it when it stalls or dies. Per-process GPU
 * memory comes from a bounded `--query-compute-apps` call on the same
 * cadence. Nothing here is ever awaited by the worker tick: status() returns
 * what was last read, with its age.
 */
export class GpuSampler {
	private readonly o: Required<Omit<GpuSamplerOptions, "attribute" | "health">> & Pick<GpuSamplerOptions, "attribute" | "health">;
	/**
	 * The fields asked for: the base set and each health signal's current
	 * name. The first run is the probe: a driver that does not know a field
	 * says so (stdout, exit 2), and the signal falls back to its older name or
	 * is left out, field by field, never losing the whole sample.
	 */
	private fields: string[] = [...GPU_FIELDS, ...SIGNAL_FIELDS];
	private unknownFields: string[] = [];
	/** GPU lines read from the running child: a child that ends after reading some (a lost GPU's exit 15) is run again at once. */
	private linesThisRun = 0;
	private child: ChildProcess | null = null;
	private readonly seen = new Map<string, Seen>();
	private apps: ComputeApp[] = [];
	/** MIG instances by parent uuid (nvidia-smi -L), read when a GPU is in MIG mode; MIG layouts change rarely. */
	private mig = new Map<string, MigDevice[]>();
	private migReadAt = Number.NEGATIVE_INFINITY;
	private lastLine: number | null = null;
	/** When it last printed anything, parsed or not: silence is a hang, garbage is not. */
	private lastOutput: number | null = null;
	private lastBad: string | null = null;
	private startedAt = 0;
	private state: GpuStatus["state"] = "starting";
	private message: string | null = null;
	private restarts = 0;
	private watchdog: NodeJS.Timeout | null = null;
	private restartTimer: NodeJS.Timeout | null = null;
	private appsBusy = false;
	private stopped = false;
	private badLines = 0;

	constructor(o: GpuSamplerOptions) {
		this.o = {
			...o,
			stallMs: o.stallMs ?? Math.max(3000, 3 * o.intervalMs),
			now: o.now ?? (() => performance.now()),
			log: o.log ?? (() => {}),
		};
	}

	start(): void {
		this.stopped = false;
		this.launch();
		this.watchdog = setInterval(() => this.check(), Math.min(this.o.intervalMs, 1000));
		this.watchdog.unref();
	}

	stop(): void {
		this.stopped = true;
		if (this.watchdog) clearInterval(this.watchdog);
		if (this.restartTimer) clearTimeout(this.restartTimer);
		this.child?.kill("SIGKILL");
		this.child = null;
	}

	/** Reads the kernel log up to now. */
	settle(): Promise<void> {
		return this.o.health?.pollKmsg() ?? Promise.resolve();
	}

	clearHealth(uuid: string): boolean {
		return this.o.health?.clear(uuid) ?? false;
	}

	/** The bus key → uuid of the GPUs read so far. */
	uuidOfBus(bus: string): string | null {
		for (const { reading } of this.seen.values()) if (reading.busId && busKey(reading.busId) === bus) return reading.uuid;
		return null;
	}

	get restartCount(): number {
		return this.restarts;
	}

	private launch(): void {
		const args = [`--query-gpu=${this.fields.join(",")}`, "--format=csv,noheader,nounits", `--loop-ms=${this.o.intervalMs}`];
		this.unknownFields = [];
		this.linesThisRun = 0;
		const child = spawn(this.o.binary, args, { stdio: ["ignore", "pipe", "pipe"] });
		this.child = child;
		this.startedAt = this.o.now();
		let stderr = "";
		child.stderr!.setEncoding("utf8").on("data", (d: string) => {
			if (stderr.length < 4096) stderr += d;
		});
		// Which GPU nvidia-smi cannot reach may be said on either stream.
		createInterface({ input: child.stderr! }).on("line", (line) => this.onHandleError(line));
		createInterface({ input: child.stdout! }).on("line", (line) => this.onLine(line));
		child.on("error", (err: NodeJS.ErrnoException) => {
			if (this.child !== child) return;
			this.child = null;
			if (err.code === "ENOENT") {
				// No nvidia-smi: a host without GPUs. Look again now and then (a driver install).
				this.setState("absent", `${this.o.binary} not found: no GPUs`);
				this.scheduleRestart(60_000);
			} else {
				this.setState("error", `cannot run ${this.o.binary}: ${err.message}`);
				this.scheduleRestart();
			}
		});
		child.on("exit", (code, signal) => {
			if (this.child !== child) return;
			this.child = null;
			if (this.stopped) return;
			const why = code !== null ? `exit code ${code}${EXIT_MEANING[code] ? ` (${EXIT_MEANING[code]})` : ""}` : `signal ${signal}`;
			const detail = stderr.trim().split("\n")[0] ?? "";
			if (code === 2 && this.unknownFields.length > 0 && this.adaptFields()) {
				this.launch();
				return;
			}
			if (code === 15 && this.linesThisRun > 0) {
				// One GPU is gone (said, and marked lost); the others reported: read on at the usual pace.
				this.setState("stale", `nvidia-smi ended: ${why}${detail ? `: ${detail}` : ""}; the GPU it names is marked lost, the others read on`);
				this.scheduleRestart(this.o.intervalMs);
				return;
			}
			if ((code === 9 || code === 12) && this.seen.size === 0) {
				this.setState("absent", `nvidia-smi: ${why}${detail ? `: ${detail}` : ""}`);
				this.scheduleRestart(60_000);
				return;
			}
			this.setState(this.seen.size > 0 ? "stale" : "error", `nvidia-smi ended: ${why}${detail ? `: ${detail}` : ""}; restarting`);
			this.scheduleRestart();
		});
	}

	private scheduleRestart(delayMs?: number): void {
		if (this.stopped || this.restartTimer) return;
		const backoff = delayMs ?? Math.min(30_000, 500 * 2 ** Math.min(this.restarts, 6));
		this.restarts++;
		this.restartTimer = setTimeout(() => {
			this.restartTimer = null;
			if (!this.stopped) this.launch();
		}, backoff);
		this.restartTimer.unref();
	}

	/** The driver does not know these fields: each signal's next name, or none. Returns whether anything is left to try. */
	private adaptFields(): boolean {
		const before = this.fields.join(",");
		for (const f of this.unknownFields) {
			const i = this.fields.indexOf(f);
			if (i < 0) continue;
			const next = fallbackField(f);
			this.o.log("nvidia-smi does not know a field", { field: f, instead: next });
			if (next) this.fields[i] = next;
			else this.fields.splice(i, 1);
		}
		// index and uuid are how a line is read at all: without them nothing can be.
		return this.fields.join(",") !== before && this.fields.includes("index") && this.fields.includes("uuid");
	}

	private onHandleError(line: string): boolean {
		const h = handleError(line);
		if (!h) return false;
		this.o.health?.unreachable(h.bus, h.message, h.lost);
		return true;
	}

	private onLine(line: string): void {
		if (line.trim() === "") return;
		this.lastOutput = this.o.now();
		const unknown = invalidField(line);
		if (unknown) {
			this.unknownFields.push(unknown);
			return;
		}
		if (this.onHandleError(line)) return;
		try {
			const reading = parseGpuLine(line, this.fields);
			const now = this.o.now();
			this.seen.set(reading.uuid, { reading, at: now });
			this.o.health?.reading(reading);
			this.linesThisRun++;
			this.lastLine = now;
			if (this.state !== "ok") this.setState("ok", null);
		} catch (err) {
			this.badLines++;
			if (this.badLines <= 5 || this.badLines % 1000 === 0) this.o.log("unparseable nvidia-smi line", { err: String(err), count: this.badLines });
			this.lastBad = String((err as Error).message).slice(0, 200);
			if (this.seen.size === 0 && this.state !== "error") this.message = `unparseable nvidia-smi output: ${this.lastBad}`;
		}
	}

	private setState(state: GpuStatus["state"], message: string | null): void {
		// Logged when the state or the kind of trouble changes (the figures in a message change every time).
		const kind = (m: string | null) => m?.replace(/\d+/g, "N") ?? null;
		if (state !== this.state || kind(message) !== kind(this.message)) this.o.log("gpu sampler state", { state, message });
		this.state = state;
		this.message = message;
	}

	/** Watchdog and compute-apps cadence. */
	private check(): void {
		const now = this.o.now();
		// Since this child started: an older child's last line says nothing of this one.
		const last = Math.max(this.lastLine ?? 0, this.startedAt);
		const printed = Math.max(this.lastOutput ?? 0, this.startedAt);
		if (this.child && now - printed > this.o.stallMs) {
			// Silent: hung (a driver or GPU that does not answer). A new child may get through.
			this.setState(this.seen.size > 0 ? "stale" : "error", `nvidia-smi printed nothing for ${Math.round(now - printed)} ms; restarting it`);
			const c = this.child;
			this.child = null;
			c.kill("SIGKILL");
			this.scheduleRestart();
		} else if (this.child && now - last > this.o.stallMs) {
			// Talking, but nothing it says is a GPU line: not a hang, and a restart would print the same.
			this.setState(
				this.seen.size > 0 ? "stale" : "error",
				`nvidia-smi prints output that is not the GPU lines asked for (${this.badLines} lines so far): ${this.lastBad ?? "?"}; not a hang: check that --nvidia-smi is nvidia-smi and that its driver knows the fields`,
			);
		}
		if (this.state === "ok" && !this.appsBusy) this.queryApps();
		if (this.state === "ok" && this.o.now() - this.migReadAt > MIG_EVERY_MS && [...this.seen.values()].some((s) => s.reading.migMode === "Enabled"))
			this.queryMig();
	}

	private queryMig(): void {
		this.migReadAt = this.o.now();
		execFile(this.o.binary, ["-L"], { timeout: Math.max(2000, this.o.intervalMs * 2), killSignal: "SIGKILL", maxBuffer: 1 << 20 }, (err, stdout) => {
			// Failed or hung: the instances stay as last read; tried again in MIG_EVERY_MS.
			if (err) return;
			this.mig = parseMigList(stdout);
		});
	}

	private queryApps(): void {
		this.appsBusy = true;
		execFile(
			this.o.binary,
			[`--query-compute-apps=${APP_FIELDS.join(",")}`, "--format=csv,noheader,nounits"],
			{ timeout: Math.max(2000, this.o.intervalMs * 2), killSignal: "SIGKILL", maxBuffer: 1 << 20 },
			(err, stdout) => {
				this.appsBusy = false;
				if (err) return;
				try {
					this.apps = parseComputeApps(stdout);
				} catch (e) {
					this.o.log("unparseable compute-apps output", { err: String(e) });
				}
			},
		);
	}

	status(): GpuStatus {
		const now = this.o.now();
		const gpus: GpuInfo[] = [...this.seen.values()]
			.sort((a, b) => a.reading.index - b.reading.index)
			.map(({ reading: { cells: _c, ...reading }, at }) => {
				const ageMs = Math.round(now - at);
				const health = this.o.health?.verdict(reading.uuid, hasHealthSignals(reading));
				return {
					...reading,
					...(health ?? {}),
					processes: this.apps
						.filter((a) => a.gpuUuid === reading.uuid)
						.map((a) => ({ pid: a.pid, usedMemoryMiB: a.usedMemoryMiB, workerId: this.o.attribute?.(a.pid) ?? null })),
					...(reading.migMode === "Enabled" && this.mig.has(reading.uuid) ? { mig: this.mig.get(reading.uuid) } : {}),
					ageMs,
					stale: ageMs > this.o.stallMs,
				};
			});
		const ageMs = this.lastLine === null ? null : Math.round(now - this.lastLine);
		if (this.state === "ok" && ageMs !== null && ageMs > this.o.stallMs) {
			return { state: "stale", message: `nvidia-smi printed nothing for ${ageMs} ms`, ageMs, gpus };
		}
		return { state: this.state, message: this.message, ageMs, gpus };
	}
}
