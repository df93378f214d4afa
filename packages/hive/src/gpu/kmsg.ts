import { busKey } from "./nvidia-smi.ts";

// Pure parsing of the kernel log's NVIDIA records (NVML cannot deliver Xid
// 79, 119 or 120: NVIDIA/DCGM#162). Formats from the driver source
// (open-gpu-kernel-modules kernel_rc.c) as ../shared/design/NVIDIA-SMI.md
// lists them; /dev/kmsg records are `PRI,SEQ,USEC,FLAGS;text`.

export interface KmsgRecord {
	/** The record's sequence number (null: a plain line, e.g. a dmesg capture). */
	seq: number | null;
	text: string;
}

/** One record of /dev/kmsg (`6,3964,206764307,-;text`), or a plain line as it is. Continuation lines (a leading space) are null. */
export function parseKmsgRecord(line: string): KmsgRecord | null {
	if (line === "" || line.startsWith(" ")) return null;
	const m = /^(\d+),(\d+),(\d+),[^;]*;(.*)$/.exec(line);
	if (m) return { seq: Number(m[2]), text: m[4]! };
	return { seq: null, text: line };
}

export type NvrmEvent =
	/** `NVRM: GPU at PCI:0000:9b:00: GPU-…`: which GPU a bus is. */
	| { kind: "gpu"; bus: string; uuid: string }
	/** `NVRM: Xid (PCI:0000:9b:00): 79, pid=…, name=…, message` (pid and name absent before R450). */
	| { kind: "xid"; bus: string; xid: number; pid: number | null; process: string | null; message: string }
	/** `NVRM: GPU 0000:18:00.0: GPU has fallen off the bus.`, or the three-record form of driver 570. */
	| { kind: "lost"; bus: string; message: string };

/**
 * Reads NVRM lines one after another; keeps the one piece of state the
 * three-record "fallen off the bus" form needs (which GPU its first record named).
 */
export class NvrmParser {
	private pendingBus: string | null = null;

	parse(text: string): NvrmEvent | null {
		const i = text.indexOf("NVRM: ");
		if (i < 0) return null;
		const t = text.slice(i + 6).trim();
		let m = /^GPU at PCI:([0-9a-fA-F:.]+): (GPU-[0-9a-fA-F-]{8,64})\s*$/.exec(t);
		if (m) {
			const bus = busKey(m[1]!);
			return bus ? { kind: "gpu", bus, uuid: m[2]! } : null;
		}
		// The MIG form adds ` GPU-I:01 GPU-CI:00` after the bus.
		m = /^Xid \(PCI:([0-9a-fA-F:.]+)(?: [^)]*)?\): (\d{1,4}),\s*(.*)$/.exec(t);
		if (m) {
			const bus = busKey(m[1]!);
			if (!bus) return null;
			let rest = m[3]!;
			let pid: number | null = null;
			let process: string | null = null;
			const p = /^pid=('?<unknown>'?|\d+), name=([^,]*),\s*(.*)$/.exec(rest);
			if (p) {
				pid = /^\d+$/.test(p[1]!) ? Number(p[1]) : null;
				process = p[2] === "<unknown>" ? null : p[2]!.slice(0, 64);
				rest = p[3]!;
			}
			return { kind: "xid", bus, xid: Number(m[2]), pid, process, message: rest.slice(0, 512) };
		}
		m = /^GPU ([0-9a-fA-F:.]+): GPU has fallen off the bus\.?\s*$/.exec(t);
		if (m) {
			const bus = busKey(m[1]!);
			return bus ? { kind: "lost", bus, message: "GPU has fallen off the bus" } : null;
		}
		m = /^The NVIDIA GPU ([0-9a-fA-F:.]+)\s*$/.exec(t);
		if (m) {
			this.pendingBus = busKey(m[1]!);
			return null;
		}
		if (/fallen off the bus and is not responding to commands/.test(t) && this.pendingBus) {
			const bus = this.pendingBus;
			this.pendingBus = null;
			return { kind: "lost", bus, message: "GPU has fallen off the bus and is not responding to commands" };
		}
		return null;
	}
}

/** Xids the GPU is not blamed for: the application's own faults (NVIDIA's device plugin skips the same set). */
export const APPLICATION_XIDS: ReadonlySet<number> = new Set([13, 31, 43, 45, 68, 109]);
/** Xids that make a GPU unhealthy: DCGM fails it (48, 74, 79, 95, 119, 120, 140), remap failure (64), and those NVIDIA's catalog says need a reset. */
export const UNHEALTHY_XIDS: ReadonlySet<number> = new Set([46, 48, 62, 64, 74, 79, 95, 110, 119, 120, 136, 140, 143, 154, 155, 156, 158]);
/** Xids that degrade it: row remap pending (63), contained memory error (94), and DCGM's warnings (PCIe, thermal, power). */
export const DEGRADED_XIDS: ReadonlySet<number> = new Set([38, 39, 42, 54, 56, 57, 58, 60, 61, 63, 94]);

/** What an Xid means for its GPU; Xids in none of the tables (92: high single-bit rate, ignore; new ones) are recorded, not held against it. */
export function xidSeverity(xid: number): "application" | "unhealthy" | "degraded" | "info" {
	if (APPLICATION_XIDS.has(xid)) return "application";
	if (UNHEALTHY_XIDS.has(xid)) return "unhealthy";
	if (DEGRADED_XIDS.has(xid)) return "degraded";
	return "info";
}
