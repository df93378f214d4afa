import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { backoffDelay } from "@apiary/kit/backoff";
import type { GpuInfo, HostFacts, Snapshot } from "@apiary/protocol";
import { sleep, until } from "@apiary/test-support/util";
import { describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import type { Hive } from "../../src/hive.ts";
import { heartbeatGpus, QueenLink, SIGNALS_EVERY_MS, socketUrl } from "../../src/queen-link.ts";

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

describe("a queen that reads the hive's socket no further for a while", () => {
	it("is not sent a heartbeat per tick queued behind one that has not left: the first tick after it has gone sends the latest sample", async () => {
		const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload: 64 << 20 });
		await new Promise((r) => wss.once("listening", r));
		const port = (wss.address() as { port: number }).port;
		const got: number[] = [];
		let queen!: WebSocket;
		const hello = new Promise<void>((resolve) =>
			wss.on("connection", (ws) => {
				queen = ws;
				ws.on("message", (d) => {
					const m = JSON.parse(d.toString()) as { type: string; snapshot?: { tick: number } };
					if (m.type === "hello") {
						ws.send(JSON.stringify({ type: "welcome", staleAfterMs: 60_000 }));
						resolve();
					} else if (m.type === "heartbeat") got.push(m.snapshot!.tick);
				});
			}),
		);
		// A hive as far as the link sees one: ticks it is handed, no workers.
		const hive = Object.assign(new EventEmitter(), {
			hiveId: "h1",
			instanceId: "i1",
			driver: { info: { name: "test" } },
			snapshot: () => null,
			unreported: () => [],
			markReported: () => {},
		});
		const link = new QueenLink({
			queen: `http://127.0.0.1:${port}`,
			token: null,
			hive: hive as unknown as Hive,
			host: {} as HostFacts,
			gpus: null,
			version: "test",
		});
		// 1 MB a heartbeat: 40 of them are more than loopback's socket buffers hold.
		const pad = "x".repeat(1 << 20);
		const tick = (n: number) => hive.emit("tick", { tick: n, pad, gpu: { gpus: [] } } as unknown as Snapshot);
		try {
			link.start();
			await hello;
			tick(0);
			await until(() => got.includes(0), 5000, "the first heartbeat");
			(queen as unknown as { _socket: Socket })._socket.pause();
			for (let n = 1; n <= 40; n++) {
				tick(n);
				await sleep(20);
			}
			(queen as unknown as { _socket: Socket })._socket.resume();
			await sleep(1000);
			const during = got.length - 1;
			// What the socket buffers held before the first was held back, not one a tick (40 without the check).
			expect(during).toBeGreaterThan(0);
			expect(during).toBeLessThan(20);
			tick(41);
			await until(() => got.at(-1) === 41, 5000, "the latest sample once the socket drained");
		} finally {
			await link.stop();
			wss.close();
		}
	}, 30_000);
});
