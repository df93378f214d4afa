export { buildQueenApp } from "./app.ts";
export { main as queenMain } from "./cli.ts";
export { startQueenDaemon, type QueenDaemon, type QueenDaemonOptions } from "./daemon.ts";
export { EventLog } from "./events.ts";
export { Registry } from "./registry.ts";
export { SqliteStore } from "./store/sqlite.ts";
export type { QueenStore } from "./store/store.ts";
