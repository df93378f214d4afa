import { describe, expect, it } from "vitest";
import { backoffDelay } from "@apiary/kit/backoff";
import { socketUrl } from "../../src/queen-link.ts";

describe("reconnecting to the queen", () => {
	it("backs off exponentially with full jitter, capped at 30 s", () => {
		const top = () => 1; // the ceiling itself
		expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, 500, 30_000, top))).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
		expect(backoffDelay(100, 500, 30_000, top)).toBe(30_000);
		expect(backoffDelay(5, 500, 30_000, () => 0.5)).toBe(8000);
		expect(backoffDelay(3, 500, 30_000, () => 0)).toBe(50); // never a hot loop
	});
	it("dials the socket path on the queen's address", () => {
		expect(socketUrl("http://10.0.0.5:7070")).toBe("ws://10.0.0.5:7070/v1/hives/connect");
		expect(socketUrl("https://queen.example/")).toBe("wss://queen.example/v1/hives/connect");
		expect(socketUrl("ws://127.0.0.1:7070")).toBe("ws://127.0.0.1:7070/v1/hives/connect");
	});
});
