import type { Health, HealthReason } from "@apiary/protocol";
import type { GpuReading } from "./nvidia-smi.ts";

// A verdict per GPU after DCGM's health watches (modules/health/DcgmHealthWatch.cpp):
// what a reading shows now (conditionsOf) and what the kernel log said
// (Xids) become causes; a cause, once seen, is latched: it survives a hive
// restart (the caller persists `causes()`), and goes only when the host
// reboots and it is not seen again, when an admin clears it, or, for a
// slowdown, after SLOWDOWN_CLEAR_MS without one. Pure: time comes in.

/** A slowdown counts once it has lasted this long (a brief one under load is not a fault)… */
export const SLOWDOWN_AFTER_MS = 30_000;
/** …and is forgotten after this long without one. */
export const SLOWDOWN_CLEAR_MS = 5 * 60_000;
/** DCGM's memory watch: retired pages (SBE + DBE) at this many fail the GPU; uncorrectable remapped rows at 512 warn. */
const RETIRED_PAGES_FAIL = 63;
const UNCORRECTABLE_ROWS_WARN = 512;

/** Thermal and power slowdowns (the power cap, 0x4, is how a loaded GPU normally runs: not counted). */
const SLOWDOWN_BITS = { thermal: 0x8 | 0x20 | 0x40, power: 0x80 } as const;

export interface Cause extends HealthReason {
	/** Slowdowns: last seen (ms), to forget them after SLOWDOWN_CLEAR_MS. */
	lastSeenMs?: number;
}

type Draft = Omit<HealthReason, "since">;

/** What a reading shows is wrong now. */
export function conditionsOf(r: GpuReading): Draft[] {
	const out: Draft[] = [];
	const s = r.signals;
	const bad = (code: string, message: string) => out.push({ code, message, severity: "unhealthy" });
	const warn = (code: string, message: string) => out.push({ code, message, severity: "degraded" });
	if (r.cells?.lost) bad("gpu-lost", "nvidia-smi: GPU is lost");
	if (r.cells?.resetRequired) bad("reset-required", "nvidia-smi: GPU requires reset");
	if (!s) return out;
	if ((s.eccUncorrectedVolatile ?? 0) > 0) bad("ecc-dbe", `${s.eccUncorrectedVolatile} uncorrected (double-bit) ECC errors since the driver loaded`);
	if (s.remappedRowsFailure === true) bad("row-remap-failure", "a row remap failed: the GPU needs service");
	if (s.recoveryAction !== null && s.recoveryAction !== "None") bad("recovery-action", `the driver asks for: ${s.recoveryAction}`);
	if ((s.retiredPagesSbe ?? 0) + (s.retiredPagesDbe ?? 0) >= RETIRED_PAGES_FAIL)
		bad("retired-pages-limit", `${(s.retiredPagesSbe ?? 0) + (s.retiredPagesDbe ?? 0)} retired pages (limit ${RETIRED_PAGES_FAIL})`);
	if (s.retiredPagesPending === true) warn("retired-pages-pending", "a page retirement waits for the next reset");
	if (s.remappedRowsPending === true) warn("row-remap-pending", "a row remap waits for the next reset");
	if ((s.remappedRowsUncorrectable ?? 0) >= UNCORRECTABLE_ROWS_WARN)
		warn("remapped-rows", `${s.remappedRowsUncorrectable} rows remapped for uncorrectable errors`);
	const mask = s.clockEventReasons ?? 0;
	if (mask & SLOWDOWN_BITS.thermal) warn("thermal-slowdown", `clocks held down for heat (${r.clockEvents?.join(", ")})`);
	if (mask & SLOWDOWN_BITS.power) warn("power-slowdown", "clocks held down by the power brake");
	return out;
}

/** Whether a reading carries any health signal at all (an old driver or a fake without them: nothing to judge by). */
export function hasHealthSignals(r: GpuReading): boolean {
	const s = r.signals;
	if (r.cells?.lost || r.cells?.resetRequired) return true;
	if (!s) return false;
	return (
		s.eccUncorrectedVolatile !== null ||
		s.remappedRowsFailure !== null ||
		s.recoveryAction !== null ||
		s.retiredPagesPending !== null ||
		s.clockEventReasons !== null
	);
}

const isSlowdown = (code: string) => code.endsWith("-slowdown");

export class HealthBook {
	/** Latched causes by GPU uuid. */
	private readonly byGpu = new Map<string, Cause[]>();
	/** Slowdowns seen but not yet long enough to count: code → since (ms), by GPU. */
	private readonly slowSince = new Map<string, Map<string, number>>();

	constructor(saved: Record<string, Cause[]> = {}) {
		for (const [uuid, cs] of Object.entries(saved)) if (Array.isArray(cs) && cs.length) this.byGpu.set(uuid, cs.slice(0, 64));
	}

	/** A reading's conditions at `now`; returns whether the latched causes changed. */
	observe(uuid: string, present: Draft[], now: number): boolean {
		let changed = false;
		const list = this.byGpu.get(uuid) ?? [];
		const slow = this.slowSince.get(uuid) ?? new Map<string, number>();
		const seen = new Set<string>();
		for (const d of present) {
			seen.add(d.code);
			const have = list.find((c) => c.code === d.code);
			if (isSlowdown(d.code)) {
				if (have) {
					have.lastSeenMs = now;
					continue;
				}
				const from = slow.get(d.code) ?? now;
				slow.set(d.code, from);
				if (now - from < SLOWDOWN_AFTER_MS) continue;
				list.push({ ...d, since: new Date(from).toISOString(), lastSeenMs: now });
				changed = true;
			} else if (!have) {
				list.push({ ...d, since: new Date(now).toISOString() });
				changed = true;
			} else if (have.message !== d.message) {
				have.message = d.message;
				changed = true;
			}
		}
		for (const code of [...slow.keys()]) if (!seen.has(code)) slow.delete(code);
		// Slowdowns are forgotten after a quiet spell; every other cause stays latched.
		const kept = list.filter((c) => !(isSlowdown(c.code) && !seen.has(c.code) && now - (c.lastSeenMs ?? 0) > SLOWDOWN_CLEAR_MS));
		if (kept.length !== list.length) changed = true;
		this.set(uuid, kept);
		this.slowSince.set(uuid, slow);
		return changed;
	}

	/** A cause from the kernel log (an Xid, a GPU fallen off the bus); returns whether it is new. */
	add(uuid: string, d: Draft, at: string): boolean {
		const list = this.byGpu.get(uuid) ?? [];
		if (list.some((c) => c.code === d.code)) return false;
		list.push({ ...d, since: at });
		this.set(uuid, list.slice(-64));
		return true;
	}

	/** An admin's clear: every latched cause of the GPU goes (one still present comes back with the next reading). */
	clear(uuid: string): boolean {
		this.slowSince.delete(uuid);
		return this.byGpu.delete(uuid);
	}

	/** The verdict; `known`: some source could have told (health signals in the reading, or the kernel log readable). */
	verdict(uuid: string, known: boolean): { health: Health | null; healthReasons: HealthReason[] } {
		const causes = this.byGpu.get(uuid) ?? [];
		const healthReasons = causes.map(({ lastSeenMs: _l, ...c }) => c);
		if (causes.some((c) => c.severity === "unhealthy")) return { health: "unhealthy", healthReasons };
		if (causes.length > 0) return { health: "degraded", healthReasons };
		return { health: known ? "healthy" : null, healthReasons };
	}

	/** What to persist. */
	causes(): Record<string, Cause[]> {
		return Object.fromEntries(this.byGpu);
	}

	private set(uuid: string, list: Cause[]): void {
		if (list.length) this.byGpu.set(uuid, list);
		else this.byGpu.delete(uuid);
	}
}
