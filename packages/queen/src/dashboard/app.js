// Apiary dashboard: plain JS, no build. One event stream keeps the page live;
// the first event is a snapshot of everything, later ones are changes. When
// the queen has a token, the page asks for it once (kept for the session) and
// sends it as a header: the stream is read with fetch, since EventSource
// cannot send one.

const state = { hives: new Map(), workers: new Map(), gpus: new Map(), exits: [], history: new Map(), runs: new Map() };
const HISTORY = 60;
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const key = (hiveId, id) => `${hiveId}/${id}`;

function bytes(n) {
	if (n == null) return "–";
	const u = ["B", "K", "M", "G", "T"];
	let i = 0;
	while (n >= 1024 && i < u.length - 1) {
		n /= 1024;
		i++;
	}
	return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)}${u[i]}`;
}
const secs = (ms) => (ms == null ? "–" : ms < 60000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60000)}m${Math.round((ms % 60000) / 1000)}s`);

function spark(values, cls, max) {
	if (values.length < 2) return `<svg class="spark ${cls}" viewBox="0 0 120 24"></svg>`;
	const top = Math.max(max ?? 0, ...values, 1e-9);
	const span = Math.max(values.length - 1, 1);
	const pts = values.map((v, i) => `${((i / span) * 120).toFixed(1)},${(23 - (v / top) * 22).toFixed(1)}`).join(" ");
	return `<svg class="spark ${cls}" viewBox="0 0 120 24" data-points="${values.length}"><polyline points="${pts}"/></svg>`;
}

function recordStats(k, stats) {
	if (!stats) return;
	const h = state.history.get(k) ?? { cpu: [], mem: [] };
	if (stats.cpu.percent != null) h.cpu.push(stats.cpu.percent);
	if (stats.memory.currentBytes != null) h.mem.push(stats.memory.currentBytes);
	h.cpu = h.cpu.slice(-HISTORY);
	h.mem = h.mem.slice(-HISTORY);
	state.history.set(k, h);
}

function renderHives() {
	const now = Date.now();
	const rows = [...state.hives.values()].sort((a, b) => a.id.localeCompare(b.id));
	$("#hives tbody").innerHTML =
		rows
			.map((h) => {
				const age = h.seenAt ? now - h.seenAt : null;
				return `<tr data-hive="${esc(h.id)}"><td>${esc(h.id)}</td><td><span class="badge ${esc(h.state)}" data-state="${esc(h.state)}">${esc(h.state)}</span>${h.storage && !h.storage.ok ? ` <span class="badge lost" data-storage="failing" title="${esc(h.storage.error)}">state dir failing</span>` : ""}${h.drain ? ` <span class="badge stale" data-drain="${esc(h.drain.state)}" title="${esc(`${h.drain.reason ?? ""}${h.drain.by ? ` (by ${h.drain.by})` : ""}${h.drain.deadline ? `, deadline ${h.drain.deadline}` : ""}`)}">${esc(h.drain.state)}</span>` : ""}</td><td class="num">${age == null ? "–" : `${secs(age)} ago`}</td><td>${esc(h.driver?.name)}${h.driver && !h.driver.enforced ? ' <span class="stale">(not enforced)</span>' : ""}</td><td class="num">${[...state.workers.values()].filter((w) => w.hiveId === h.id && w.state === "running").length}</td><td class="num">${[...state.gpus.values()].filter((g) => g.hiveId === h.id).length}</td><td class="labels">${Object.entries(
					h.labels ?? {},
				)
					.map(([k, v]) => `<span class="label">${esc(k)}=${esc(v)}</span>`)
					.join(" ")}</td><td>${esc(h.host?.hostname)}</td></tr>`;
			})
			.join("") || `<tr><td colspan="8" class="empty">no hives yet</td></tr>`;
}

function gpuState(g) {
	if (g.free) return ["free", g.health === "degraded" ? `free, degraded (${(g.healthReasons ?? []).map((r) => r.code).join(", ")})` : "free"];
	if (g.health === "unhealthy") return ["lost", `unhealthy (${(g.healthReasons ?? []).map((r) => r.code).join(", ")})`];
	// A placed worker holds its GPUs through a claim: who runs there says more than the claim's id.
	if (g.heldBy?.length) return ["held", `held by ${g.heldBy.join(", ")}`];
	if (g.claimId) return ["claimed", `claimed ${g.claimId}`];
	const hive = state.hives.get(g.hiveId);
	if (hive && hive.state !== "ready") return ["lost", `hive ${hive.state}`];
	if (hive?.drain) return ["stale", `hive ${hive.drain.state}`];
	if (g.stale) return ["stale", "stale"];
	return ["held", "busy"];
}

function setDrain(d) {
	const h = state.hives.get(d.hiveId);
	if (h) h.drain = d.drain;
	refreshGpus();
}

function renderGpus() {
	const gpus = [...state.gpus.values()].sort((a, b) => a.hiveId.localeCompare(b.hiveId) || a.index - b.index);
	$("#gpus").innerHTML =
		gpus
			.map((g) => {
				const [cls, text] = gpuState(g);
				const memPct = g.memoryTotalMiB ? ((g.memoryUsedMiB ?? 0) / g.memoryTotalMiB) * 100 : 0;
				return `<div class="card" data-gpu="${esc(key(g.hiveId, g.uuid))}"><div class="title"><span>${esc(g.hiveId)} · GPU ${g.index}</span><span class="badge ${cls}" data-state="${cls}">${esc(text)}</span></div>
<div class="sub">${esc(g.name)}</div>
<div class="label"><span>memory</span><span>${g.memoryUsedMiB ?? "–"} / ${g.memoryTotalMiB ?? "–"} MiB</span></div><div class="bar"><div style="width:${memPct.toFixed(1)}%"></div></div>
<div class="label"><span>utilization</span><span>${g.utilizationGpu == null ? "n/a" : `${g.utilizationGpu}%`}</span></div><div class="bar util"><div style="width:${g.utilizationGpu ?? 0}%"></div></div>
<div class="label"><span>power</span><span>${g.powerDrawW == null ? "n/a" : `${g.powerDrawW} W`}</span></div>
<div class="label"><span>temp</span><span>${g.temperatureC == null ? "n/a" : `${g.temperatureC} °C`}${g.signals?.temperatureMemoryC == null ? "" : ` · HBM ${g.signals.temperatureMemoryC} °C`}</span></div>
<div class="label" data-health="${esc(g.health ?? "unknown")}"><span>health</span><span title="${esc((g.healthReasons ?? []).map((r) => `${r.code} since ${r.since}: ${r.message}`).join("\n"))}">${esc(g.health ?? "unknown")}${g.healthReasons?.length ? ` (${esc(g.healthReasons.map((r) => r.code).join(", "))})` : ""}${g.clockEvents?.length ? ` · ${esc(g.clockEvents.join(", "))}` : ""}</span></div></div>`;
			})
			.join("") || `<div class="empty">no GPUs</div>`;
}

function renderWorkers() {
	const ws = [...state.workers.values()].filter((w) => w.state === "running").sort((a, b) => a.hiveId.localeCompare(b.hiveId) || a.id.localeCompare(b.id));
	$("#workers tbody").innerHTML =
		ws
			.map((w) => {
				const k = key(w.hiveId, w.id);
				const h = state.history.get(k) ?? { cpu: [], mem: [] };
				const s = w.stats;
				const limit = w.limits?.memoryBytes;
				return `<tr data-worker="${esc(w.id)}"><td>${esc(w.id)}</td><td>${esc(w.hiveId)}</td><td class="gpus">${w.gpus.map((g) => `<span class="label" title="${esc(g)}">${esc(g.length > 12 ? `${g.slice(0, 12)}…` : g)}</span>`).join(" ")}</td><td>${spark(h.cpu, "cpu", (w.limits?.cpu ?? 1) * 100)}</td><td class="num">${s?.cpu.percent == null ? "–" : `${s.cpu.percent.toFixed(1)}%`}</td><td>${spark(h.mem, "mem", limit ?? undefined)}</td><td class="num">${bytes(s?.memory.currentBytes)}${limit ? ` / ${bytes(limit)}` : ""}</td><td class="num">${s?.pids.current ?? "–"}</td><td class="cmd" title="${esc(w.command.join(" "))}">${esc(w.command.join(" "))}</td></tr>`;
			})
			.join("") || `<tr><td colspan="9" class="empty">no running workers</td></tr>`;
}

function renderExits() {
	$("#exits tbody").innerHTML =
		state.exits
			.slice(0, 50)
			.map((x) => {
				const e = x.exit;
				const oom = e.oomKilled === true;
				const result = `${e.reason}${e.exitCode != null ? ` (${e.exitCode})` : e.signal ? ` (${e.signal})` : ""}${oom ? " · OOM-killed" : ""}`;
				return `<tr data-exit="${esc(x.workerId)}" class="${oom ? "oom" : ""}"><td>${esc(x.workerId)}</td><td>${esc(x.hiveId)}</td><td class="result">${esc(result)}</td><td class="num">${secs(e.durationMs)}</td><td class="num">${bytes(e.peakMemoryBytes)}</td><td>${esc(e.endedAt?.slice(11, 19))}</td></tr>`;
			})
			.join("") || `<tr><td colspan="6" class="empty">no exits yet</td></tr>`;
}

// ---- sharded runs: the newest first, one bar segment per shard coloured by its state.
const RUNS_SHOWN = 20;
function shardTitle(run, s) {
	const a = s.attempts.at(-1);
	const n = run.shards.length;
	const result = s.state === "failed" && a?.exitCode != null ? `failed (${a.exitCode})` : s.state;
	return `[${s.index + 1}/${n}] ${result}${a?.hiveId ? ` on ${a.hiveId}` : ""}${s.attempts.length > 1 ? `, ${s.attempts.length} attempts` : ""}${a?.durationMs != null ? `, ${secs(a.durationMs)}` : ""}`;
}

function renderRuns() {
	const runs = [...state.runs.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, RUNS_SHOWN);
	$("#runs tbody").innerHTML =
		runs
			.map((r) => {
				const count = (st) => r.shards.filter((s) => s.state === st).length;
				const parts = ["passed", "flaky", "failed", "lost", "cancelled", "running", "waiting"].filter(count).map((st) => `${count(st)} ${st}`);
				const badge = { running: "claimed", passed: "ready", failed: "lost", cancelled: "left" }[r.state] ?? "unknown";
				const bar = r.shards
					.map((s) => `<span class="${esc(s.state)}" data-shard="${s.index}" data-state="${esc(s.state)}" title="${esc(shardTitle(r, s))}"></span>`)
					.join("");
				return `<tr data-run="${esc(r.id)}"><td>${esc(r.id)}</td><td><span class="badge ${badge}" data-state="${esc(r.state)}">${esc(r.state)}</span>${r.exitCode != null ? ` <span class="hint">exit ${r.exitCode}</span>` : ""}</td><td><div class="shards">${bar}</div></td><td>${esc(parts.join(", "))}</td><td class="cmd" title="${esc(r.body.command.join(" "))}">${esc(r.body.command.join(" "))}</td><td>${esc(r.createdAt.slice(11, 19))}</td></tr>`;
			})
			.join("") || `<tr><td colspan="6" class="empty">no runs yet</td></tr>`;
}

const runReads = new Map();
/** A run's shards change in bursts (100 shards start at once): one read of it per 250 ms. */
function refreshRun(id) {
	if (runReads.has(id)) return;
	runReads.set(
		id,
		setTimeout(() => {
			runReads.delete(id);
			api(`/v1/runs/${encodeURIComponent(id)}`)
				.then((r) => {
					state.runs.set(r.id, r);
					schedule();
				})
				.catch(() => {
					// A 401 asks for the token by itself; a later event reads it again.
				});
		}, 250),
	);
}

// ---- right-sizing: one card per group of runs, a row per resource with the
// distribution of the runs' needs, the recommendation (solid) and the current limit (dashed).
const RESOURCE = { memory: "memory", cpu: "cpu", timeout: "timeout", gpuMemory: "GPU memory" };
function inUnit(unit, v) {
	if (v == null) return "–";
	if (unit === "bytes") return bytes(v);
	if (unit === "MiB") return bytes(v * 2 ** 20);
	if (unit === "ms") return secs(v);
	return `${Number(v.toFixed(2))} cores`;
}

function histogram(r) {
	const W = 160;
	const H = 36;
	const BINS = 24;
	const top = Math.max(...r.values, r.recommended ?? 0, r.current ?? 0, 1e-9);
	const counts = new Array(BINS).fill(0);
	for (const v of r.values) counts[Math.min(BINS - 1, Math.floor((v / top) * BINS))]++;
	const most = Math.max(...counts, 1);
	const bw = W / BINS;
	const bars = counts
		.map((c, i) =>
			c
				? `<rect x="${(i * bw).toFixed(1)}" y="${(H - (c / most) * (H - 2)).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${((c / most) * (H - 2)).toFixed(1)}"/>`
				: "",
		)
		.join("");
	const line = (v, cls) => (v == null ? "" : `<line class="${cls}" x1="${((v / top) * W).toFixed(1)}" x2="${((v / top) * W).toFixed(1)}" y1="0" y2="${H}"/>`);
	return `<svg class="dist" viewBox="0 0 ${W} ${H}" data-runs="${r.values.length}">${bars}${line(r.current, "current")}${line(r.recommended, "recommended")}</svg>`;
}

function renderAdvice() {
	const groups = state.advice?.groups ?? [];
	$("#advice").innerHTML =
		groups
			.map((g) => {
				const labels = Object.entries(g.labels)
					.map(([k, v]) => `${esc(k)}=${esc(v)}`)
					.join(" ");
				const rows = g.recommendations
					.map((r) => {
						const rate = r.resource === "memory" ? r.oomRate : r.resource === "timeout" ? r.timeoutRate : r.resource === "cpu" ? r.throttledRate : null;
						const rateName = { memory: "OOM", timeout: "timed out", cpu: "throttled" }[r.resource];
						return `<tr data-resource="${r.resource}"><td>${RESOURCE[r.resource]}</td><td class="num">${inUnit(r.unit, r.current)} → <b class="rec">${r.recommended == null ? "none yet" : inUnit(r.unit, r.recommended)}</b></td><td class="num">${r.confidence == null ? "" : `${(r.confidence * 100).toFixed(1)}%`}</td><td class="num">${rate == null ? "" : `${rateName} ${(rate * 100).toFixed(1)}%`}</td><td>${histogram(r)}</td></tr><tr class="why"><td></td><td colspan="4">${esc(r.reason)}</td></tr>`;
					})
					.join("");
				return `<div class="card advice" data-profile="${esc(g.profile ?? "")}"><div class="title">${esc(g.profile ?? "no profile")} ${labels} · ${g.runs} runs</div><table>${rows}</table></div>`;
			})
			.join("") || `<p class="empty">no runs recorded yet</p>`;
}

let adviceTimer = null;
/** Recommendations change only when runs end: read them at start and 2 s after exits (coalesced). */
function refreshAdvice(delay) {
	if (adviceTimer) return;
	adviceTimer = setTimeout(() => {
		adviceTimer = null;
		api("/v1/recommendations")
			.then((a) => {
				state.advice = a;
				schedule();
			})
			.catch(() => {
				// A 401 asks for the token by itself; anything else waits for the next exit.
			});
	}, delay);
}

function renderAll() {
	renderHives();
	renderGpus();
	renderWorkers();
	renderExits();
	renderRuns();
	renderAdvice();
	const free = [...state.gpus.values()].filter((g) => g.free).length;
	$("#summary").textContent =
		`${state.hives.size} hives · ${[...state.workers.values()].filter((w) => w.state === "running").length} workers · ${free}/${state.gpus.size} GPUs free`;
	const pending = state.pending ?? 0;
	$("#pending").textContent = pending > 0 ? `${pending} placement${pending === 1 ? "" : "s"} waiting` : "";
	$("#pending").hidden = pending === 0;
}

let pending = false;
function schedule() {
	if (pending) return;
	pending = true;
	requestAnimationFrame(() => {
		pending = false;
		renderAll();
	});
}

function seen(hiveId, at) {
	const h = state.hives.get(hiveId);
	if (h && at) h.seenAt = Date.parse(at);
}

let token = sessionStorage.getItem("apiary-token");
const authHeaders = () => (token ? { authorization: `Bearer ${token}` } : {});

/** A JSON read of the API; a 401 asks for the token. */
async function api(path) {
	const res = await fetch(path, { headers: authHeaders() });
	if (res.status === 401) {
		askToken(token ? "That token was refused." : "This queen needs a token.");
		throw new Error("unauthorized");
	}
	return res.json();
}

function askToken(message) {
	const form = $("#login");
	$("#login-msg").textContent = message;
	form.hidden = false;
	$("#token").focus();
}

async function refreshGpus() {
	const gpus = await api("/v1/gpus");
	state.gpus = new Map(gpus.map((g) => [key(g.hiveId, g.uuid), g]));
	schedule();
}

const handlers = {
	snapshot(d) {
		state.hives = new Map(d.hives.map((h) => [h.id, { ...h, seenAt: h.lastSeenAt ? Date.parse(h.lastSeenAt) : null }]));
		state.workers = new Map(d.workers.map((w) => [key(w.hiveId, w.id), w]));
		state.gpus = new Map(d.gpus.map((g) => [key(g.hiveId, g.uuid), g]));
		for (const w of d.workers) recordStats(key(w.hiveId, w.id), w.stats);
		refreshAdvice(0);
		api("/v1/runs").then((runs) => {
			state.runs = new Map(runs.map((r) => [r.id, r]));
			schedule();
		});
		// The newest exits only: a fleet keeps many thousands.
		api("/v1/workers?state=exited&order=recent&limit=200").then((ws) => {
			state.exits = ws
				.filter((w) => w.exit)
				.map((w) => ({ hiveId: w.hiveId, workerId: w.id, exit: w.exit }))
				.sort((a, b) => (b.exit.endedAt ?? b.exit.endedBefore ?? "").localeCompare(a.exit.endedAt ?? a.exit.endedBefore ?? ""));
			schedule();
		});
	},
	"hive.joined"(d, e) {
		state.hives.set(d.hive.id, { ...d.hive, seenAt: Date.parse(e.at) });
	},
	"hive.restarted"(d, e) {
		state.hives.set(d.hive.id, { ...d.hive, seenAt: Date.parse(e.at) });
	},
	"hive.stale"(d) {
		const h = state.hives.get(d.hiveId);
		if (h) h.state = "stale";
		refreshGpus();
	},
	"hive.lost"(d) {
		const h = state.hives.get(d.hiveId);
		if (h) h.state = "lost";
		refreshGpus();
	},
	// Cordon and drain: the event carries the hive as it now is.
	"hive.cordoned"(d) {
		setDrain(d);
	},
	"hive.draining"(d) {
		setDrain(d);
	},
	"hive.drained"(d) {
		setDrain(d);
	},
	"hive.uncordoned"(d) {
		setDrain(d);
	},
	"hive.left"(d) {
		const h = state.hives.get(d.hiveId);
		if (h) h.state = "left";
		refreshGpus();
	},
	"worker.spawned"(d, e) {
		state.workers.set(key(d.hiveId, d.worker.id), d.worker);
		seen(d.hiveId, e.at);
	},
	"worker.updated"(d, e) {
		const w = state.workers.get(key(d.hiveId, d.workerId));
		if (w) w.stats = d.stats;
		recordStats(key(d.hiveId, d.workerId), d.stats);
		const h = state.hives.get(d.hiveId);
		if (h && h.state !== "ready") h.state = "ready";
		seen(d.hiveId, e.at);
	},
	"worker.exited"(d) {
		state.workers.delete(key(d.hiveId, d.workerId));
		state.exits.unshift({ hiveId: d.hiveId, workerId: d.workerId, exit: d.exit });
		refreshAdvice(2000);
	},
	"worker.evicted"(d, e) {
		state.workers.delete(key(d.hiveId, d.workerId));
		state.exits.unshift({
			hiveId: d.hiveId,
			workerId: d.workerId,
			exit: { reason: `evicted: ${d.reason}`, exitCode: null, signal: null, oomKilled: null, durationMs: null, peakMemoryBytes: null, endedAt: e.at },
		});
	},
	"gpu.updated"(d) {
		state.gpus.set(key(d.hiveId, d.gpu.uuid), d.gpu);
	},
	"gpu.health": () => refreshGpus(),
	"run.started"(d) {
		state.runs.set(d.run.id, d.run);
	},
	"run.shard"(d) {
		refreshRun(d.runId);
	},
	"run.finished"(d) {
		refreshRun(d.runId);
	},
	"claim.created": () => refreshGpus(),
	"claim.released": () => refreshGpus(),
};

let lastEventId = null;
let streaming = false;

/** Server-Sent Events over fetch: parse "event/data/id" blocks, reconnect with Last-Event-ID. */
async function connect() {
	if (streaming) return;
	streaming = true;
	const conn = $("#conn");
	for (;;) {
		try {
			const headers = { accept: "text/event-stream", ...authHeaders(), ...(lastEventId ? { "last-event-id": lastEventId } : {}) };
			const res = await fetch("/v1/events", { headers });
			if (res.status === 401) {
				conn.textContent = "needs a token";
				conn.className = "badge stale";
				askToken(token ? "That token was refused." : "This queen needs a token.");
				streaming = false;
				return;
			}
			if (!res.ok) throw new Error(String(res.status));
			conn.textContent = "live";
			conn.className = "badge ok";
			const reader = res.body.getReader();
			const decoder = new TextDecoder();
			let buf = "";
			for (;;) {
				const { value, done } = await reader.read();
				if (done) break;
				buf += decoder.decode(value, { stream: true });
				for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
					dispatch(buf.slice(0, i));
					buf = buf.slice(i + 2);
				}
			}
		} catch {
			// The stream broke (queen restarted, network): resume below.
		}
		conn.textContent = "reconnecting…";
		conn.className = "badge stale";
		await new Promise((r) => setTimeout(r, 1000));
	}
}

function dispatch(block) {
	let type = "message";
	let data = "";
	for (const line of block.split("\n")) {
		if (line.startsWith(":")) continue; // keepalive comment
		const c = line.indexOf(":");
		const field = c < 0 ? line : line.slice(0, c);
		const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
		if (field === "event") type = value;
		else if (field === "data") data += data ? `\n${value}` : value;
		else if (field === "id") lastEventId = value;
	}
	const fn = handlers[type];
	if (!fn || !data) return;
	const e = JSON.parse(data);
	fn(e.data, e);
	schedule();
}

$("#login").addEventListener("submit", (ev) => {
	ev.preventDefault();
	token = $("#token").value.trim() || null;
	if (token) sessionStorage.setItem("apiary-token", token);
	$("#login").hidden = true;
	connect();
});

setInterval(renderHives, 1000);
// A hive's storage condition changes without an event of its own: read it now and then.
setInterval(() => {
	if (!streaming) return;
	Promise.all([api("/v1/hives"), api("/v1/placements")])
		.then(([hives, placements]) => {
			for (const v of hives) {
				const h = state.hives.get(v.id);
				if (h) h.storage = v.storage;
			}
			state.pending = placements.pending.length;
			schedule();
		})
		.catch(() => {
			// A 401 asks for the token by itself; anything else is tried again in 5 s.
		});
}, 2000);
renderAll();
connect();
