import type { HiveView } from "@apiary/protocol";
import { checkId } from "@apiary/protocol/ids";
import { parseDuration } from "@apiary/protocol/units";
import { convertFlag, parseFlags, UsageError } from "@apiary/kit/cli";
import { call } from "@apiary/kit/client";
import { loadToken } from "@apiary/kit/listen";

// `queen cordon|drain|uncordon HIVE` (admin): a hive out of rotation for
// maintenance and back, as kubectl cordon/drain and nomad node drain do
// (POST /v1/hives/:id/{cordon,drain,uncordon}).

export const CORDON_HELP = (d: string) => `Usage: queen cordon HIVE [--reason TEXT]

No new placements on HIVE; its GPUs are neither free nor claimable; its
running workers go on. Undo with queen uncordon HIVE.
${common(d)}`;

export const DRAIN_HELP = (d: string) => `Usage: queen drain HIVE [--deadline DURATION] [--reason TEXT] [--wait]

Cordons HIVE; at the deadline its workers still running are stopped as any
stop is (stop signal, grace period, SIGKILL; exit reason "drained"). The hive
is "drained" once none is left. Undo with queen uncordon HIVE.

  --deadline DURATION  how long running workers may go on (default 1h; 0: stop them now)
  --wait               return once the hive is drained (exit 1 if it is uncordoned first)
${common(d)}`;

export const UNCORDON_HELP = (d: string) => `Usage: queen uncordon HIVE

HIVE takes placements again (a cordon, a drain, or a drained hive).
${common(d)}`;

function common(d: string): string {
	return `  --reason TEXT        why, for the operators who see it (queen hives, events)
  --json               print the hive as JSON
  --queen URL          queen (default $APIARY_QUEEN or ${d})
  --token-file FILE    an admin token (default $APIARY_TOKEN)`;
}

const describe = (h: HiveView) =>
	h.drain === null
		? `hive ${h.id} is schedulable\n`
		: `hive ${h.id} is ${h.drain.state}${h.drain.reason ? ` (${h.drain.reason})` : ""}${h.drain.state === "draining" && h.drain.deadline ? `, deadline ${h.drain.deadline}` : ""}; ${h.workers} running workers\n`;

export async function cordon(op: "cordon" | "drain" | "uncordon", argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const { values: v, positionals } = parseFlags(`queen ${op}`, argv, {
		reason: { type: "string" },
		deadline: { type: "string" },
		wait: { type: "boolean" },
		json: { type: "boolean" },
		queen: { type: "string" },
		"token-file": { type: "string" },
	});
	if (positionals.length !== 1) throw new UsageError(`queen ${op}: give one hive id${positionals.length > 1 ? `, not ${positionals.length}` : ""}`);
	const hive = positionals[0]!;
	try {
		checkId(hive, "HIVE");
	} catch (e) {
		throw new UsageError(`queen ${op}: ${(e as Error).message}`);
	}
	if (op !== "drain" && (v.deadline !== undefined || v.wait)) throw new UsageError(`queen ${op}: --deadline and --wait go with queen drain`);
	if (op === "uncordon" && v.reason !== undefined) throw new UsageError("queen uncordon: --reason goes with cordon and drain");
	const deadlineMs = convertFlag(`queen ${op}`, "deadline", v.deadline, parseDuration);
	const base = v.queen ?? process.env.APIARY_QUEEN ?? defaultQueen;
	const auth = loadToken(v["token-file"]);
	const body: Record<string, unknown> = {};
	if (v.reason !== undefined) body.reason = v.reason;
	if (deadlineMs !== undefined) body.deadlineSeconds = Math.ceil(deadlineMs / 1000);
	let h = await call<HiveView>(base, "POST", `/v1/hives/${encodeURIComponent(hive)}/${op}`, body, auth);
	if (op === "drain" && v.wait) {
		if (!v.json) out(describe(h));
		// Polled: a drain ends at a deadline of seconds to hours, and a poll survives a queen's failover.
		while (h.drain?.state === "draining") {
			await new Promise((r) => setTimeout(r, 1000));
			h = await call<HiveView>(base, "GET", `/v1/hives/${encodeURIComponent(hive)}`, undefined, auth);
		}
		if (h.drain?.state !== "drained") throw new Error(`hive ${hive} was ${h.drain ? h.drain.state : "uncordoned"} before it was drained`);
	}
	out(v.json ? `${JSON.stringify(h)}\n` : describe(h));
	return 0;
}
