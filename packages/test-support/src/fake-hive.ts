import type { GpuInfo, HeartbeatMessage, HelloMessage, QueenMessage, WorkerInfo, WorkerStats } from "@apiary/protocol";
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

export class FakeHive {
	readonly ws: WebSocket;
	readonly hiveId: string;
	readonly instanceId: string;
	acks: number[] = [];
	closed: { code: number; reason: string } | null = null;
	private seq = 0;
	gpus: GpuInfo[];

	constructor(queenUrl: string, hiveId: string, o: { gpus?: GpuInfo[]; token?: string; instanceId?: string } = {}) {
		this.hiveId = hiveId;
		this.instanceId = o.instanceId ?? `inst-${hiveId}`;
		this.gpus = o.gpus ?? [];
		this.ws = new WebSocket(`${queenUrl.replace("http", "ws")}/v1/hives/connect`, { headers: o.token ? { authorization: `Bearer ${o.token}` } : {} });
		this.ws.on("message", (d) => {
			const m = JSON.parse(d.toString()) as QueenMessage;
			if (m.type === "ack") this.acks.push(m.seq);
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
