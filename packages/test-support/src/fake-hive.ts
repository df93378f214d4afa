import type { CommandMessage, GpuInfo, HeartbeatMessage, HelloMessage, Limits, QueenMessage, RunUsage, WorkerInfo, WorkerStats } from "@apiary/protocol";
import WebSocket from "ws";

// A simulated hive over a real WebSocket, for queen tests that need many
// workers or exact control of what a hive says.

export const gpu = (index: number, over: Partial<GpuInfo> = {}): GpuInfo => ({
	index,
	uuid: `GPU-00000000-0000-4000-8000-${String(index).padStart(12, "0")}`,
	name: "NVIDIA A100-SXM4-80GB",
	busId: null,
	memoryTotalMiB: 81920,
	memoryUsedMiB: 4,
	memoryFreeMiB: 81425,
	utilizationGpu: 0,
	utilizationMemory: 0,
	temperatureC: 30,
	powerDrawW: 60,
	powerLimitW: 400,
	migMode: "Disabled",
	processes: [],
	ageMs: 10,
	stale: false,
	...over,
});

/** A complete stats sample taken at wall time `t` (ms), with plausible numbers. */
export const stats = (t: number): WorkerStats => ({
	sampledAt: t,
	uptimeMs: 1000,
	cpu: { usageNs: t * 1000, percent: 12.5, periods: 100, throttledPeriods: 3, throttledNs: 1000 },
	memory: { currentBytes: 1 << 26, peakBytes: 1 << 27, workingSetBytes: 1 << 25, anonBytes: 1 << 25, fileBytes: 1 << 20, limitBytes: 1 << 29, oomKills: 0 },
	io: { readBytes: 0, writeBytes: t, readOps: 0, writeOps: 1, readBytesPerSec: 0, writeBytesPerSec: 10, readOpsPerSec: 0, writeOpsPerSec: 1 },
	pids: { current: 3, limit: null },
	pressure: { cpu: null, memory: null, io: null },
	gpuMemoryMiB: null,
});

/** A hive's hello as the queen's unit tests send it straight to the registry: one core, no cgroup root. */
export const helloMessage = (id: string, gpus: GpuInfo[]): HelloMessage => ({
	type: "hello",
	hiveId: id,
	instanceId: `i-${id}`,
	version: "t",
	host: { hostname: id, os: "", kernel: "", arch: "", cpuModel: "", cores: 1, memoryBytes: 1 },
	driver: { name: "v1", enforced: true, root: null, reason: "" },
	gpus,
});

export const worker = (id: string, over: Partial<WorkerInfo> = {}): WorkerInfo => ({
	id,
	command: ["sleep", "60"],
	profile: null,
	limits: { cpu: null, memoryBytes: null, pids: null, timeoutMs: null },
	labels: {},
	gpus: [],
	env: {},
	cwd: null,
	pid: 1000,
	state: "running",
	startedAt: "2026-11-21T00:00:00.000Z",
	cgroup: null,
	adopted: false,
	stats: null,
	exit: null,
	...over,
});

/** What an exited run of `cores` average cores and `peakBytes` working set used (one GPU-less minute). */
export const runUsage = (peakBytes: number, cores: number, limits: { cpu: number | null; memoryBytes: number | null }): RunUsage => ({
	ticks: 60,
	cpu: {
		seconds: cores * 60,
		avgCores: cores,
		p95Cores: cores * 1.2,
		throttledFraction: 0,
		limitCores: limits.cpu,
		efficiency: limits.cpu === null ? null : cores / limits.cpu,
	},
	memory: {
		peakWorkingSetBytes: peakBytes,
		kernelPeakBytes: peakBytes * 2,
		limitBytes: limits.memoryBytes,
		efficiency: limits.memoryBytes === null ? null : peakBytes / limits.memoryBytes,
	},
	io: { readBytes: 0, writeBytes: 0 },
	pressure: { cpuSome: 0, memorySome: 0, memoryFull: 0, ioSome: 0, ioFull: 0 },
	gpus: [],
});

/** Worker `id` (started as worker() starts) ended with exit code 0 `durationMs` later, holding `gpus`. */
export const endedWorker = (id: string, durationMs = 60_000, gpus = ["0"]): WorkerInfo =>
	worker(id, {
		state: "exited",
		gpus,
		exit: {
			exitCode: 0,
			signal: null,
			reason: "exited",
			message: null,
			startedAt: "2026-11-21T00:00:00.000Z",
			endedAt: new Date(Date.parse("2026-11-21T00:00:00.000Z") + durationMs).toISOString(),
			durationMs,
			peakMemoryBytes: null,
			oomKilled: false,
		},
	});

/** An exited worker as a hive reports it, with its usage: `oom` makes it OOM-killed at its limit. */
export function exitedWorker(
	id: string,
	o: {
		startedAt: number;
		durationMs: number;
		peakBytes: number;
		cores: number;
		oom?: boolean;
		profile: string | null;
		labels: Record<string, string>;
		limits: Limits;
	},
): WorkerInfo {
	const started = new Date(o.startedAt).toISOString();
	return worker(id, {
		profile: o.profile,
		labels: o.labels,
		limits: o.limits,
		state: "exited",
		startedAt: started,
		exit: {
			exitCode: o.oom ? null : 0,
			signal: o.oom ? "SIGKILL" : null,
			reason: o.oom ? "oom" : "exited",
			message: null,
			startedAt: started,
			endedAt: new Date(o.startedAt + o.durationMs).toISOString(),
			durationMs: o.durationMs,
			peakMemoryBytes: null,
			oomKilled: o.oom === true,
			usage: runUsage(o.peakBytes, o.cores, o.limits),
		},
	});
}

export class FakeHive {
	readonly ws: WebSocket;
	readonly hiveId: string;
	readonly instanceId: string;
	acks: number[] = [];
	/** Commands the queen sent (placement), in order; a test answers them with send(). */
	commands: CommandMessage[] = [];
	/** Every message the queen sent, in order (acks, commands, cancel, credit…). */
	messages: QueenMessage[] = [];
	closed: { code: number; reason: string } | null = null;
	private seq = 0;
	gpus: GpuInfo[];

	constructor(queenUrl: string, hiveId: string, o: { gpus?: GpuInfo[]; token?: string; instanceId?: string; ca?: Buffer; cert?: Buffer; key?: Buffer } = {}) {
		this.hiveId = hiveId;
		this.instanceId = o.instanceId ?? `inst-${hiveId}`;
		this.gpus = o.gpus ?? [];
		this.ws = new WebSocket(`${queenUrl.replace("http", "ws")}/v1/hives/connect`, {
			headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
			...(o.ca ? { ca: o.ca } : {}),
			...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}),
		});
		this.ws.on("message", (d) => {
			const m = JSON.parse(d.toString()) as QueenMessage;
			this.messages.push(m);
			if (m.type === "ack") this.acks.push(m.seq);
			else if (m.type === "command") this.commands.push(m);
		});
		this.ws.on("close", (code, reason) => {
			this.closed = { code, reason: reason.toString() };
		});
		this.ws.on("error", () => {});
	}

	opened(): Promise<void> {
		return new Promise((resolve, reject) => {
			if (this.ws.readyState === WebSocket.OPEN) return resolve();
			this.ws.once("open", () => resolve());
			this.ws.once("unexpected-response", (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
			this.ws.once("error", reject);
		});
	}

	send(m: unknown): void {
		this.ws.send(typeof m === "string" ? m : JSON.stringify(m));
	}

	hello(): void {
		const m: HelloMessage = {
			type: "hello",
			hiveId: this.hiveId,
			instanceId: this.instanceId,
			version: "test",
			host: { hostname: this.hiveId, os: "test", kernel: "6.1", arch: "x64", cpuModel: "test", cores: 2, memoryBytes: 1 << 30 },
			driver: { name: "v2", enforced: true, root: "/sys/fs/cgroup/x", reason: "test" },
			gpus: this.gpus,
		};
		this.send(m);
	}

	heartbeat(workers: WorkerInfo[]): number {
		const seq = ++this.seq;
		const m: HeartbeatMessage = {
			type: "heartbeat",
			seq,
			snapshot: {
				hiveId: this.hiveId,
				instanceId: this.instanceId,
				seq,
				takenAt: new Date().toISOString(),
				tickMs: 0.1,
				driver: { name: "v2", enforced: true, root: "/sys/fs/cgroup/x", reason: "test" },
				workers,
				gpu: { state: "ok", message: null, ageMs: 10, gpus: this.gpus },
			},
		};
		this.send(m);
		return seq;
	}

	close(): void {
		this.ws.terminate();
	}
}
