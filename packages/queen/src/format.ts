import type { GpuView, HiveView, QueenEvent, QueenWorkerView } from "@apiary/protocol";
import { formatBytes, shellJoin } from "@apiary/protocol/units";

/** Columns padded to their widest cell; the last column is not padded. */
export function table(rows: string[][]): string {
	const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
	return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n")}\n`;
}

export function formatHives(hives: HiveView[]): string {
	return table([
		["HIVE", "STATE", "SCHEDULING", "LAST SEEN", "DRIVER", "WORKERS", "GPUS", "LABELS", "HOST"],
		...hives.map((h) => [
			h.id,
			h.state,
			h.drain ? `${h.drain.state}${h.drain.reason ? ` (${h.drain.reason.slice(0, 40)})` : ""}` : "schedulable",
			h.lastSeenAgoMs === null ? "-" : `${(h.lastSeenAgoMs / 1000).toFixed(1)}s ago`,
			`${h.driver.name}${h.driver.enforced ? "" : "!"}`,
			String(h.workers),
			String(h.gpus),
			Object.entries(h.labels)
				.map(([k, v]) => `${k}=${v}`)
				.join(",") || "-",
			h.host.hostname,
		]),
	]);
}

export function formatWorkers(ws: QueenWorkerView[]): string {
	return table([
		["HIVE", "WORKER", "STATE", "CPU%", "MEM", "COMMAND"],
		...ws.map((w) => [
			w.hiveId,
			w.id,
			// "oom" says it already; an OOM kill behind another reason (timeout, killed) is worth a word.
			w.state === "exited" ? `${w.exit?.reason}${w.exit?.oomKilled && w.exit.reason !== "oom" ? " OOM" : ""}` : w.state,
			w.stats?.cpu.percent == null ? "-" : w.stats.cpu.percent.toFixed(1),
			formatBytes(w.stats?.memory.currentBytes),
			shellJoin(w.command).slice(0, 60),
		]),
	]);
}

export function formatGpus(gs: GpuView[]): string {
	return table([
		["HIVE", "GPU", "NAME", "MEM USED", "MEM TOTAL", "UTIL", "TEMP", "HEALTH", "STATE"],
		...gs.map((g) => [
			g.hiveId,
			String(g.index),
			g.name,
			g.memoryUsedMiB === null ? "-" : `${g.memoryUsedMiB} MiB`,
			g.memoryTotalMiB === null ? "-" : `${g.memoryTotalMiB} MiB`,
			g.utilizationGpu === null ? "-" : `${g.utilizationGpu}%`,
			g.temperatureC === null ? "-" : `${g.temperatureC}C`,
			g.health == null ? "-" : g.health === "healthy" ? "healthy" : `${g.health} (${(g.healthReasons ?? []).map((r) => r.code).join(",")})`,
			g.free ? "free" : g.claimId ? `claimed ${g.claimId}` : g.heldBy.length ? `held by ${g.heldBy.join(",")}` : g.stale ? "stale" : "busy",
		]),
	]);
}

const colours: Record<string, string> = {
	"hive.lost": "31",
	"hive.stale": "33",
	"worker.exited": "36",
	"worker.evicted": "31",
	"stream.lagged": "35",
	"hive.joined": "32",
	"hive.cordoned": "33",
	"gpu.health": "31",
	"hive.draining": "33",
	"hive.drained": "33",
	"worker.spawned": "32",
};

/** One line per event for a person: time, type, hive, worker, detail. */
export function formatEvent(e: QueenEvent, colour: boolean): string {
	const d = e.data as Record<string, any>;
	let detail = "";
	switch (e.type) {
		case "snapshot":
			detail = `${d.hives.length} hives, ${d.workers.length} running workers, ${d.gpus.length} GPUs (${d.gpus.filter((g: GpuView) => g.free).length} free)`;
			break;
		case "worker.spawned":
			detail = shellJoin(d.worker.command).slice(0, 80);
			break;
		case "worker.updated":
			detail = `cpu ${d.stats.cpu.percent ?? "-"}% mem ${formatBytes(d.stats.memory.currentBytes)}`;
			break;
		case "worker.exited": {
			const x = d.exit;
			detail = `${x.reason}${x.exitCode !== null ? ` code ${x.exitCode}` : ""}${x.signal ? ` ${x.signal}` : ""}${x.oomKilled ? " OOM-killed" : ""}${x.durationMs === null ? " (end not observed)" : ` after ${(x.durationMs / 1000).toFixed(1)}s`}`;
			break;
		}
		case "worker.evicted":
			detail = d.reason;
			break;
		case "hive.lost":
			detail = `evicted ${d.evictedWorkers.length} workers`;
			break;
		case "hive.stale":
			detail = `last seen ${(d.lastSeenAgoMs / 1000).toFixed(1)}s ago`;
			break;
		case "claim.created":
		case "claim.released":
			detail = `${d.claim.id} ${d.claim.holder} ${d.claim.gpus.map((g: { hiveId: string; index: number }) => `${g.hiveId}:${g.index}`).join(",")}${d.reason ? ` (${d.reason})` : ""}`;
			break;
		case "gpu.updated":
			detail = `gpu ${d.gpu.index} used ${d.gpu.memoryUsedMiB ?? "-"} MiB util ${d.gpu.utilizationGpu ?? "-"}%${d.gpu.free ? " free" : ""}`;
			break;
		case "hive.cordoned":
		case "hive.draining":
		case "hive.drained":
			detail = `${d.drain.reason ?? ""}${d.drain.by ? ` by ${d.drain.by}` : ""}${d.drain.deadline && e.type === "hive.draining" ? ` deadline ${d.drain.deadline}` : ""}`;
			break;
		case "gpu.health":
			detail = `gpu ${d.index} ${d.previous ?? "-"} → ${d.health ?? "unknown"}${d.healthReasons?.length ? ` (${d.healthReasons.map((r: { code: string }) => r.code).join(", ")})` : ""}`;
			break;
		case "stream.lagged":
			detail = `fell behind after event ${d.lastEventId}; resuming`;
			break;
	}
	const type = e.type.padEnd(15);
	const line = `${e.at.slice(11, 23)}  ${colour && colours[e.type] ? `\x1b[${colours[e.type]}m${type}\x1b[0m` : type}  ${(e.hiveId ?? "-").padEnd(12)}  ${(e.workerId ?? "-").padEnd(14)}  ${detail}`;
	return `${line.trimEnd()}\n`;
}
