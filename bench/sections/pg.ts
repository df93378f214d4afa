import { join } from "node:path";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, r3 } from "../lib.ts";
import { drive } from "./ingest.ts";

// The queen on PostgreSQL beside the queen on SQLite, same load, same run:
// queen CPU per heartbeat (goal ≤ 1.3× SQLite's) and PostgreSQL row writes per
// hive per minute in steady state (goal ≤ 12: one per hive per 5 s), counted
// by the queen from each statement's row count (/metrics). A real server,
// started for the section.
/** A counter of the queen's /metrics. */
async function counter(queenUrl: string, name: string): Promise<number> {
	const text = await (await fetch(`${queenUrl}/metrics`)).text();
	const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
	if (!m) throw new Error(`${name} is not in the queen's /metrics`);
	return Number(m[1]);
}

export async function pgStore() {
	const hives = Number(process.env.BENCH_HIVES ?? (ctx.quick ? 5 : 300));
	const seconds = Number(process.env.BENCH_SECONDS ?? (ctx.quick ? 2 : 15));
	const warmup = ctx.quick ? 1 : 5;
	const dir = tempDir("bench-pg");
	let server: Postgres | null = null;
	try {
		server = await startPostgres();
		const url = server.url;
		const perBeat = (r: Awaited<ReturnType<typeof drive>>) => r.cpuMs / r.sent;
		// SQLite first, then PostgreSQL, then SQLite again: the ratio is against their mean.
		const sqlite: number[] = [];
		const lite = async () => {
			const q = await startQueen({ db: join(dir, `q${sqlite.length}.db`), staleAfter: "30s", evictAfter: "300s", sqlite: true });
			try {
				sqlite.push(perBeat(await drive(q.url, q.proc.pid!, hives, seconds, true, warmup)));
			} finally {
				await q.stop();
			}
		};
		await lite();
		const q = await startQueen({ db: url, staleAfter: "30s", evictAfter: "300s", sqlite: true });
		let onPg: number;
		let writesPerHiveMin: number;
		let commitsPerSec: number;
		try {
			// Steady state only: the counters are read around the measured window, after the join and warm-up.
			let w0 = 0;
			let w1 = 0;
			let c0 = 0;
			let c1 = 0;
			const r = await drive(q.url, q.proc.pid!, hives, seconds, true, warmup, {
				before: async () => {
					w0 = await counter(q.url, "apiary_queen_db_rows_written_total");
					c0 = await counter(q.url, "apiary_queen_db_commits_total");
				},
				after: async () => {
					w1 = await counter(q.url, "apiary_queen_db_rows_written_total");
					c1 = await counter(q.url, "apiary_queen_db_commits_total");
				},
			});
			onPg = perBeat(r);
			writesPerHiveMin = ((w1 - w0) / hives / r.elapsedS) * 60;
			commitsPerSec = (c1 - c0) / r.elapsedS;
		} finally {
			await q.stop();
		}
		await lite();
		const sqliteMean = (sqlite[0]! + sqlite[1]!) / 2;
		ctx.results.pg = {
			hives,
			workersPerHive: 50,
			seconds,
			queenCpuPerHeartbeatMs: { sqlite: sqlite.map(r3), postgres: r3(onPg) },
			postgresOverSqlite: r3(onPg / sqliteMean),
			rowWritesPerHivePerMinute: r3(writesPerHiveMin),
			commitsPerSecond: r3(commitsPerSec),
		};
		log(
			`   ${hives} hives × 50 workers at 1 Hz for ${seconds} s: queen CPU per heartbeat on PostgreSQL ${r3(onPg)} ms vs SQLite ${sqlite.map(r3).join(" / ")} ms (before / after): ${r3(onPg / sqliteMean)}× (goal ≤ 1.3×)`,
		);
		log(
			`   PostgreSQL row writes in steady state: ${r3(writesPerHiveMin)} per hive per minute (goal ≤ 12: one per hive per 5 s), in ${r3(commitsPerSec)} commits/s`,
		);
	} finally {
		await server?.stop();
		removeDir(dir);
	}
}
