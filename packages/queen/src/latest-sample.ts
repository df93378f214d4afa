import type { PackedStats } from "@apiary/protocol";

/** Positions 0–23 of a packed sample are numbers; 24–26 are pressure (8 numbers or null); 27 GPU memory by GPU. */
const SCALARS = 24;
const PRESSURES = 3;
/** Each pressure as a presence flag and its 8 numbers. */
const PRESSURE_WIDTH = 9;

const doubles = (n: number): number[] => Array.from({ length: n }, () => Number.NaN);

/**
 * A running worker's latest sample, overwritten in place by the next. The
 * queen holds one per worker (100,000 at fleet scale) and replaces each every
 * second: kept as it came off the socket, every sample lived a second, so the
 * collector promoted ~35 MB a second into the old generation and the heap kept
 * room for it. Here the numbers go into arrays of unboxed doubles (null as
 * NaN, which JSON cannot carry) written in place, which allocates nothing;
 * pressure gets its array only once a sample has some (hosts without PSI
 * never do), and GPU memory, rare, stays an object.
 */
export class LatestSample {
	private readonly v: number[] = doubles(SCALARS);
	private psi: number[] | null = null;
	private gpu: Record<string, number> | null = null;

	constructor(a: PackedStats) {
		this.set(a);
	}

	/** `a` has been checked (checkPackedStats). */
	set(a: PackedStats): void {
		const v = this.v;
		for (let i = 0; i < SCALARS; i++) v[i] = (a[i] as number | null) ?? Number.NaN;
		for (let p = 0; p < PRESSURES; p++) {
			const given = a[SCALARS + p] as (number | null)[] | null;
			if (!given && !this.psi) continue;
			this.psi ??= doubles(PRESSURES * PRESSURE_WIDTH);
			const psi = this.psi;
			const at = p * PRESSURE_WIDTH;
			psi[at] = given ? 1 : 0;
			if (given) for (let i = 0; i < 8; i++) psi[at + 1 + i] = given[i] ?? Number.NaN;
		}
		this.gpu = (a[27] as Record<string, number> | null) ?? null;
	}

	get sampledAt(): number {
		return this.v[0]!;
	}

	/** As on the socket. */
	packed(): PackedStats {
		const n = (x: number) => (Number.isNaN(x) ? null : x);
		const out: unknown[] = this.v.map(n);
		for (let p = 0; p < PRESSURES; p++) {
			const at = p * PRESSURE_WIDTH;
			out.push(this.psi?.[at] === 1 ? this.psi.slice(at + 1, at + 1 + 8).map(n) : null);
		}
		out.push(this.gpu);
		return out;
	}
}
