import { describe, expect, it } from "vitest";
import { backoffDelay } from "@apiary/kit/backoff";
import type { GpuInfo } from "@apiary/protocol";
import { heartbeatGpus, SIGNALS_EVERY_MS, socketUrl } from "../../src/queen-link.ts";

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
	it("sends a GPU's health signals only when they changed since last sent, or every 30 s; a GPU without them as it is", () => {
		const g = (temp: number): GpuInfo => ({ uuid: "GPU-1", index: 0, signals: { temperatureMemoryC: temp } }) as unknown as GpuInfo;
		const sent = new Map<string, { json: string; at: number }>();
		expect(heartbeatGpus([g(40)], sent, 0)[0]!.signals).toEqual({ temperatureMemoryC: 40 });
		expect(heartbeatGpus([g(40)], sent, 1000)[0]).toEqual({ uuid: "GPU-1", index: 0 });
		expect(heartbeatGpus([g(41)], sent, 2000)[0]!.signals).toEqual({ temperatureMemoryC: 41 });
		expect(heartbeatGpus([g(41)], sent, 2000 + SIGNALS_EVERY_MS - 1)[0]!.signals).toBeUndefined();
		expect(heartbeatGpus([g(41)], sent, 2000 + SIGNALS_EVERY_MS)[0]!.signals).toEqual({ temperatureMemoryC: 41 });
		const bare = { uuid: "GPU-2", index: 1 } as unknown as GpuInfo;
		expect(heartbeatGpus([bare], sent, 0)[0]).toBe(bare);
	});
});
