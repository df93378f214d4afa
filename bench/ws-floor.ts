// The transport floor for queen ingest: a WebSocket server on the same ws
// (and bufferutil) that only parses each message and acks its seq. The bench
// drives it with the same load as the queen; what the queen spends above it
// is validation, the registry, events and SQLite. It welcomes a hello with
// the interval WS_FLOOR_PACE_MS (0 unless set): the simulator's own cost is
// measured against it (bench/sections/simulator.ts).
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server, path: "/v1/hives/connect", maxPayload: 16 << 20 });
wss.on("connection", (ws) => {
	ws.on("message", (data) => {
		const m = JSON.parse(data.toString()) as { type?: string; seq?: number };
		if (m.type === "hello") ws.send(JSON.stringify({ type: "welcome", heartbeatMs: Number(process.env.WS_FLOOR_PACE_MS ?? 0) }));
		else if (m.seq !== undefined) ws.send(JSON.stringify({ type: "ack", seq: m.seq }));
	});
});
server.listen(0, "127.0.0.1", () => {
	const a = server.address();
	process.stdout.write(`listening on http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}\n`);
});
process.on("SIGTERM", () => process.exit(0));
