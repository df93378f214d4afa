import { closeSync, constants, fstatSync, openSync, read } from "node:fs";

// Follows the kernel log: /dev/kmsg (one record per read, SEQ in each) or a
// regular file (a capture, or a test's fixture) followed as it grows. The fd
// is non-blocking and polled: a blocking read of /dev/kmsg would hold one of
// libuv's four threads for good. Where it cannot be opened (EPERM under
// kernel.dmesg_restrict=1 without CAP_SYSLOG, or no such file) it says so
// once and stays off: Xid health is then unknown, not "healthy".

export interface KmsgCursor {
	/** /dev/kmsg: the last record's SEQ handled. */
	seq?: number;
	/** A regular file: the byte offset read up to. */
	offset?: number;
}

export interface KmsgReaderOptions {
	path: string;
	/** Where a previous run stopped (same boot): records before it are not handled again. */
	from?: KmsgCursor;
	pollMs?: number;
	onLine: (line: string) => void;
	/** After each batch of lines: where to resume from. */
	onCursor?: (c: KmsgCursor) => void;
	onUnavailable: (why: string) => void;
}

const CHUNK = 64 * 1024;

export class KmsgReader {
	private readonly o: KmsgReaderOptions & { pollMs: number };
	private fd: number | null = null;
	private device = false;
	private offset = 0;
	private lastSeq = -1;
	private partial = "";
	private timer: NodeJS.Timeout | null = null;
	private reading = false;
	private stopped = false;
	/** The reader's state: null until started; otherwise whether it reads. */
	available: boolean | null = null;

	constructor(o: KmsgReaderOptions) {
		this.o = { pollMs: 500, ...o };
	}

	start(): void {
		try {
			this.fd = openSync(this.o.path, constants.O_RDONLY | constants.O_NONBLOCK);
			const st = fstatSync(this.fd);
			this.device = st.isCharacterDevice();
			if (this.device) this.lastSeq = this.o.from?.seq ?? -1;
			else this.offset = this.o.from?.offset !== undefined && this.o.from.offset <= st.size ? this.o.from.offset : 0;
			this.available = true;
		} catch (err) {
			const e = err as NodeJS.ErrnoException;
			this.available = false;
			this.o.onUnavailable(
				e.code === "EPERM" || e.code === "EACCES"
					? `cannot read ${this.o.path} (${e.code}: kernel.dmesg_restrict needs CAP_SYSLOG): Xid events unknown`
					: `cannot read ${this.o.path} (${e.code ?? e.message}): Xid events unknown`,
			);
			return;
		}
		this.poll();
	}

	stop(): void {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		if (this.fd !== null && !this.reading) closeSync(this.fd);
		if (!this.reading) this.fd = null;
	}

	private inflight: Promise<void> | null = null;

	/** Reads what there is now; resolves when caught up (a read already going on: when it is). */
	poll(): Promise<void> {
		if (this.reading && this.inflight) return this.inflight;
		if (this.stopped || this.fd === null) return Promise.resolve();
		this.reading = true;
		if (this.timer) clearTimeout(this.timer);
		this.inflight = new Promise<void>((resolve) => {
			const buf = Buffer.allocUnsafe(CHUNK);
			const next = () => {
				if (this.stopped || this.fd === null) return done();
				read(this.fd, buf, 0, CHUNK, this.device ? null : this.offset, (err, n) => {
					if (err) {
						// EAGAIN: nothing new; EPIPE: records overwritten before we read them (go on from the next).
						if ((err as NodeJS.ErrnoException).code === "EPIPE") return next();
						return done();
					}
					if (n === 0) return done();
					this.take(buf.toString("utf8", 0, n), n);
					next();
				});
			};
			const done = () => {
				this.reading = false;
				if (this.stopped) {
					if (this.fd !== null) closeSync(this.fd);
					this.fd = null;
				} else {
					this.o.onCursor?.(this.device ? { seq: this.lastSeq } : { offset: this.offset - Buffer.byteLength(this.partial) });
					this.timer = setTimeout(() => void this.poll(), this.o.pollMs);
					this.timer.unref();
				}
				resolve();
			};
			next();
		});
		return this.inflight;
	}

	private take(text: string, bytes: number): void {
		if (this.device) {
			// One record per read: "PRI,SEQ,USEC,FLAGS;message\n" then continuation lines.
			const seq = Number(/^\d+,(\d+),/.exec(text)?.[1] ?? Number.NaN);
			if (Number.isFinite(seq)) {
				if (seq <= this.lastSeq) return;
				this.lastSeq = seq;
			}
			for (const line of text.split("\n")) if (line) this.o.onLine(line);
			return;
		}
		this.offset += bytes;
		const lines = (this.partial + text).split("\n");
		this.partial = lines.pop() ?? "";
		// A line cut at the chunk's end is kept for the next read; a line longer than a chunk is dropped.
		if (this.partial.length > CHUNK) this.partial = "";
		for (const line of lines) if (line) this.o.onLine(line);
	}
}
