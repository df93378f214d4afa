// Distribution-free statistics for right-sizing: the binomial law of order
// statistics gives how sure a recommendation is and bounds on a quantile
// without assuming how needs are distributed.

const logFact: number[] = [0];
function logFactorial(n: number): number {
	for (let i = logFact.length; i <= n; i++) logFact.push(logFact[i - 1]! + Math.log(i));
	return logFact[n]!;
}

/** P(Binomial(n, p) ≤ k) for k = 0..n, cached: groups of the same size share it. */
const cdfCache = new Map<string, Float64Array>();
export function binomialCdfs(n: number, p: number): Float64Array {
	const key = `${n}:${p}`;
	let out = cdfCache.get(key);
	if (out) return out;
	out = new Float64Array(n + 1);
	const lp = Math.log(p);
	const lq = Math.log1p(-p);
	let sum = 0;
	for (let i = 0; i <= n; i++) {
		sum += p <= 0 ? (i === 0 ? 1 : 0) : p >= 1 ? (i === n ? 1 : 0) : Math.exp(logFactorial(n) - logFactorial(i) - logFactorial(n - i) + i * lp + (n - i) * lq);
		out[i] = Math.min(1, sum);
	}
	out[n] = 1;
	if (cdfCache.size > 4096) cdfCache.clear();
	cdfCache.set(key, out);
	return out;
}

/** P(Binomial(n, p) ≤ k). */
export const binomialCdf = (k: number, n: number, p: number): number => (k < 0 ? 0 : k >= n ? 1 : binomialCdfs(n, p)[k]!);

/**
 * How sure we can be, from order statistics alone, that at least a share q
 * of runs like these need no more than `rec`: with k of n needs at or under
 * it, P(the q-quantile ≤ the k-th smallest) = P(Binomial(n, q) ≤ k − 1).
 * Distribution-free; 1 − qⁿ when every run fits.
 */
export function confidence(sortedNeeds: ArrayLike<number>, rec: number, q: number): number {
	let k = 0;
	while (k < sortedNeeds.length && sortedNeeds[k]! <= rec) k++;
	return binomialCdf(k - 1, sortedNeeds.length, q);
}

/**
 * Indexes (1-based) of the order statistics that bound the q-quantile at
 * `level`: P(X(lower) ≤ ξq) ≥ level and P(X(upper) ≥ ξq) ≥ level; null
 * when n is too small for that.
 */
export function quantileBounds(n: number, q: number, level: number): { lower: number | null; upper: number | null } {
	const cdf = binomialCdfs(n, q);
	let lower: number | null = null;
	for (let l = n; l >= 1; l--) {
		if (1 - cdf[l - 1]! >= level) {
			lower = l;
			break;
		}
	}
	let upper: number | null = null;
	for (let u = 1; u <= n; u++) {
		if (cdf[u - 1]! >= level) {
			upper = u;
			break;
		}
	}
	return { lower, upper };
}

/**
 * The weighted q-quantile: the smallest value whose cumulative weight (of
 * the values at or under it) reaches q of the total. A binary search over
 * the sorted values, each probe one pass: no sort of (value, weight) pairs.
 */
export function weightedQuantile(values: ArrayLike<number>, weights: readonly { weight: number }[], sorted: ArrayLike<number>, q: number): number {
	let total = 0;
	for (let i = 0; i < values.length; i++) total += weights[i]!.weight;
	const want = q * total - 1e-12 * total;
	const upTo = (t: number) => {
		let w = 0;
		for (let i = 0; i < values.length; i++) if (values[i]! <= t) w += weights[i]!.weight;
		return w;
	};
	let lo = 0;
	let hi = sorted.length - 1;
	while (lo < hi) {
		const mid = (lo + hi) >> 1;
		if (upTo(sorted[mid]!) >= want) hi = mid;
		else lo = mid + 1;
	}
	return sorted[lo]!;
}
