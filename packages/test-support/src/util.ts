// Small waiting helpers shared by every tier's tests.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until `fn` returns a truthy value, or fail after `ms` naming what was awaited. */
export async function until<T>(fn: () => T | Promise<T>, ms = 10_000, what = "condition"): Promise<NonNullable<T>> {
	const deadline = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v) return v as NonNullable<T>;
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await sleep(20);
	}
}
