/*
 * test_client.c — libpinfer against a fake pinferd running in a thread of
 * this test.
 *
 * The fake speaks the real protocol from shm/: it listens on a unix socket
 * in a temp dir, answers pf_hello with pf_welcome + two sealed memfds
 * (F_SEAL_SHRINK|GROW|SEAL on both, F_SEAL_FUTURE_WRITE on d2c after
 * mapping it, like pinferd), consumes SQEs, sleeps on the client's sq_seq
 * (FUTEX_WAITV) when idle with daemon_sleeping set, and posts scripted
 * completions, waking the client only when its cq_waiting is set.
 *
 * What the fake does with a TEXT prompt depends on its first word:
 *   (default)  echo the prompt back, tok_bytes per TOKENS entry, for each of
 *              n sequences, then FINISHED (LAST on the last sequence)
 *   hold       post nothing until the request is cancelled
 *   slow       one token, then hold
 *   error      ERROR (EINVAL)
 *   long       a token whose text is 300 bytes and a FINISHED with 200 bytes,
 *              both split into MORE continuation entries as pinferd does
 *   interleave two sequences whose continuation chains interleave
 *   lp         a token followed by 20 alternatives in 3 LOGPROBS entries
 *              chained with MORE, then a token with 8 in one entry
 *   wait       wait until the client sets cq_waiting, then echo
 *   die        close everything (a crashed daemon)
 *   gone       set daemon_state GONE and wake the client (socket stays open)
 * TOKENS prompts are echoed id by id; CHAT prompts are echoed as
 * "role:content|" per message.
 *
 * No fixed sleeps: the test waits for conditions with generous timeouts.
 * cmocka asserts run only on the test thread; the fake records problems in
 * f->problem.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/pinfer.h"
#include "shm/proto.h"
#include "shm/ring.h"
#include "shm/wait.h"
#include "tests/unit/testutil.h"

#define TIMEOUT_MS 10000 /* generous: sanitizer builds are slow */

/* ---- the fake daemon ------------------------------------------------------------- */

struct fake {
	char dir[64], path[108];
	int lfd, cfd;
	pthread_t th;
	bool running;
	_Atomic int stop;
	_Atomic int paused;          /* do not consume SQEs */
	_Atomic uint32_t ctl;        /* futex word: bumped to wake the fake */

	/* behaviour, set before start */
	uint16_t reject_status;      /* answer the hello with this status */
	const char *reject_msg;
	int n_fds;                   /* fds sent with the welcome (default 3) */
	int efd;                     /* the wake eventfd of the session (v2) */
	int bad_size;                /* 1: welcome sizes inconsistent; 2: memfd size differs */
	int tok_bytes;               /* echo bytes per token (default 5) */
	int64_t idle_ns;             /* idle sleep (default 20 ms) */
	uint32_t max_inflight;
	_Atomic pid_t sleeper;       /* "wait": also wait until this thread sleeps in futex() */

	/* session */
	struct pf_c2d_hdr *c2d;
	struct pf_d2c_hdr *d2c;
	size_t c2d_bytes, d2c_bytes;
	struct pf_sqe *sq;
	uint8_t *payload;
	struct pf_cqe *cq;
	uint32_t sq_n, cq_n, payload_n, sq_head, cq_tail;
	uint64_t held[256];
	int n_held;

	/* observations (counters atomic; the rest under lock) */
	_Atomic int n_sessions, n_submits, n_cancels, n_wakes, n_kicks, dead, in_session;
	pthread_mutex_t lock;
	struct pf_sqe last_sqe;
	char last_stops[8][65];
	int n_last_stops;
	int32_t last_stop_ids[16];
	char problem[256];
};

static void fake_problem(struct fake *f, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&f->lock);
	if (!f->problem[0]) {
		va_start(ap, fmt);
		vsnprintf(f->problem, sizeof(f->problem), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&f->lock);
}

static void fake_wake_client(struct fake *f)
{
	/* as pinferd: bump after publishing, then wake only a sleeper */
	atomic_fetch_add(&f->d2c->cq_seq, 1);
	uint32_t how = atomic_load(&f->c2d->cq_waiting);
	if (how) {
		/* count first: the woken client may check the count at once */
		atomic_fetch_add(&f->n_wakes, 1);
		if (how & PF_WAIT_FUTEX)
			pf_futex_wake(&f->d2c->cq_seq, INT_MAX);
		if ((how & PF_WAIT_EVENTFD) && f->efd >= 0) {
			uint64_t one = 1;
			ssize_t k = write(f->efd, &one, sizeof(one));
			(void)k;
		}
	}
}

static bool client_hung_up(struct fake *f)
{
	struct pollfd p = { .fd = f->cfd, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLIN));
}

static void post(struct fake *f, const struct pf_cqe *e)
{
	while (pf_ring_free(f->cq_n, f->cq_tail, &f->c2d->cq_head) == 0) {
		fake_wake_client(f);
		if (atomic_load(&f->stop) || client_hung_up(f))
			return;
		sched_yield();
	}
	f->cq[f->cq_tail & (f->cq_n - 1)] = *e;
	f->cq_tail++;
	pf_ring_publish(&f->d2c->cq_tail, f->cq_tail);
}

/* pinferd's layout: continuation TOKENS(-1, MORE) entries, then `last_e`
 * with the remaining <= PF_CQE_TEXT bytes in its own text field */
static void post_with_text(struct fake *f, struct pf_cqe *last_e, const char *text, size_t len)
{
	size_t off = 0;
	while (len - off > PF_CQE_TEXT) {
		struct pf_cqe e = { .kind = PF_CQ_TOKENS, .index = last_e->index, .flags = PF_CQE_MORE, .tag = last_e->tag };
		e.u.tok.token = -1;
		e.u.tok.logprob = NAN;
		e.text_len = PF_CQE_TEXT;
		memcpy(e.u.tok.text, text + off, PF_CQE_TEXT);
		post(f, &e);
		off += PF_CQE_TEXT;
	}
	last_e->text_len = (uint16_t)(len - off);
	memcpy(last_e->kind == PF_CQ_FINISHED ? last_e->u.fin.text : last_e->u.tok.text, text + off, len - off);
	post(f, last_e);
}

static void post_token(struct fake *f, uint64_t tag, int index, int32_t tok, const char *text, size_t len)
{
	struct pf_cqe e = { .kind = PF_CQ_TOKENS, .index = (uint8_t)index, .tag = tag };
	e.u.tok.token = tok;
	e.u.tok.logprob = -0.5f;
	post_with_text(f, &e, text, len);
}

static void post_finished(struct fake *f, uint64_t tag, int index, int reason, bool last, const char *text,
			  size_t len, int prompt, int gen)
{
	struct pf_cqe e = { .kind = PF_CQ_FINISHED, .index = (uint8_t)index, .tag = tag };
	e.flags = last ? PF_CQE_LAST : 0;
	e.u.fin.reason = (uint8_t)reason;
	e.u.fin.prompt_tokens = prompt;
	e.u.fin.cached_tokens = 1;
	e.u.fin.generated_tokens = gen;
	e.u.fin.queue_s = 0.001f;
	e.u.fin.ttft_s = 0.01f;
	e.u.fin.decode_s = 0.1f;
	post_with_text(f, &e, text, len);
}

static void post_error(struct fake *f, uint64_t tag, int code, const char *msg)
{
	struct pf_cqe e = { .kind = PF_CQ_ERROR, .tag = tag };
	e.u.err.code = code;
	snprintf(e.u.err.message, sizeof(e.u.err.message), "%s", msg);
	post(f, &e);
}

static void echo(struct fake *f, uint64_t tag, int n, const char *text, size_t len)
{
	size_t step = (size_t)f->tok_bytes;
	for (int i = 0; i < n; i++) {
		int gen = 0;
		for (size_t off = 0; off < len; off += step, gen++)
			post_token(f, tag, i, gen, text + off, len - off < step ? len - off : step);
		post_finished(f, tag, i, PF_FINISHED_STOP, i == n - 1, "", 0, (int)len, gen);
	}
}

/* Is thread tid blocked in futex(2) right now?  (0: don't care.)  Lets the
 * fake post only once the client really sleeps, so the wake is needed. */
static bool in_futex(pid_t tid)
{
	char p[64];
	long nr = -1;
	if (!tid)
		return true;
	snprintf(p, sizeof(p), "/proc/self/task/%d/syscall", (int)tid);
	FILE *fp = fopen(p, "r");
	if (!fp)
		return true; /* cannot tell: the test then only checks delivery */
	if (fscanf(fp, "%ld", &nr) != 1)
		nr = -1;
	fclose(fp);
	/* libpinfer sleeps in futex(2), or in io_uring_enter (FUTEX_WAIT or a
	 * poll of the wake eventfd through its ring), or poll(2) on the eventfd */
	return nr == SYS_futex || nr == SYS_io_uring_enter || nr == SYS_poll || nr == SYS_ppoll;
}

static bool starts(const char *s, size_t len, const char *w)
{
	size_t l = strlen(w);
	return len >= l && !memcmp(s, w, l);
}

/* Returns false when the fake should die. */
static bool handle_submit(struct fake *f, const struct pf_sqe *e)
{
	atomic_fetch_add(&f->n_submits, 1);
	if ((uint64_t)e->payload_off + e->payload_len > f->payload_n ||
	    (uint64_t)e->stop_off + e->stop_len > f->payload_n ||
	    (uint64_t)e->stop_ids_off + e->n_stop_ids * 4ull > f->payload_n) {
		fake_problem(f, "tag %llu: payload outside the area", (unsigned long long)e->tag);
		post_error(f, e->tag, EINVAL, "payload outside the area");
		return true;
	}
	char *in = malloc(e->payload_len + 1);
	memcpy(in, f->payload + e->payload_off, e->payload_len);
	in[e->payload_len] = 0;
	pthread_mutex_lock(&f->lock);
	f->last_sqe = *e;
	f->n_last_stops = 0;
	for (uint32_t off = 0; off < e->stop_len && f->n_last_stops < 8;) {
		uint32_t l = f->payload[e->stop_off + off++];
		if (l == 0 || l > 64 || l > e->stop_len - off)
			break;
		memcpy(f->last_stops[f->n_last_stops], f->payload + e->stop_off + off, l);
		f->last_stops[f->n_last_stops++][l] = 0;
		off += l;
	}
	if (e->n_stop_ids <= 16)
		memcpy(f->last_stop_ids, f->payload + e->stop_ids_off, e->n_stop_ids * 4);
	pthread_mutex_unlock(&f->lock);

	bool live = true;
	size_t len = e->payload_len;
	if (e->input == PF_INPUT_TOKENS) {
		int32_t *ids = (int32_t *)in;
		for (size_t i = 0; i < len / 4; i++) {
			char t[16];
			int32_t id;
			memcpy(&id, in + i * 4, 4);
			snprintf(t, sizeof(t), "<%d>", id);
			post_token(f, e->tag, 0, id, t, strlen(t));
		}
		(void)ids;
		post_finished(f, e->tag, 0, PF_FINISHED_LENGTH, true, "", 0, (int)(len / 4), (int)(len / 4));
	} else if (e->input == PF_INPUT_CHAT) {
		char out[4096];
		size_t o = 0;
		uint32_t n, off = 4, l;
		memcpy(&n, in, 4);
		for (uint32_t i = 0; i < n && off + 4 <= len; i++) {
			for (int part = 0; part < 2; part++) {
				memcpy(&l, in + off, 4);
				off += 4;
				if (l > len - off || o + l + 2 > sizeof(out)) {
					fake_problem(f, "malformed chat payload");
					goto out;
				}
				memcpy(out + o, in + off, l);
				o += l;
				out[o++] = part ? '|' : ':';
				off += l;
			}
		}
		if (off != len)
			fake_problem(f, "chat payload has %u stray bytes", (unsigned)(len - off));
		echo(f, e->tag, 1, out, o);
	} else if (starts(in, len, "hold")) {
		f->held[f->n_held++] = e->tag;
	} else if (starts(in, len, "slow")) {
		post_token(f, e->tag, 0, 1, "slow", 4);
		f->held[f->n_held++] = e->tag;
	} else if (starts(in, len, "error")) {
		post_error(f, e->tag, EINVAL, "fake: error requested");
	} else if (starts(in, len, "long")) {
		char t[300], u[200];
		for (size_t i = 0; i < sizeof(t); i++)
			t[i] = (char)('a' + i % 26);
		for (size_t i = 0; i < sizeof(u); i++)
			u[i] = (char)('A' + i % 26);
		post_token(f, e->tag, 0, 7, t, sizeof(t));
		post_finished(f, e->tag, 0, PF_FINISHED_STOP, true, u, sizeof(u), 1, 1);
	} else if (starts(in, len, "interleave")) {
		char t0[200], t1[150];
		memset(t0, '0', sizeof(t0));
		memset(t1, '1', sizeof(t1));
		/* chunks of sequence 0 and 1 alternate: 0 MORE, 1 MORE, 0 MORE, 1 final, 0 final */
		struct pf_cqe c = { .kind = PF_CQ_TOKENS, .flags = PF_CQE_MORE, .tag = e->tag, .text_len = PF_CQE_TEXT };
		c.u.tok.token = -1;
		c.index = 0;
		memcpy(c.u.tok.text, t0, PF_CQE_TEXT);
		post(f, &c);
		c.index = 1;
		memcpy(c.u.tok.text, t1, PF_CQE_TEXT);
		post(f, &c);
		c.index = 0;
		memcpy(c.u.tok.text, t0, PF_CQE_TEXT);
		post(f, &c);
		struct pf_cqe last1 = { .kind = PF_CQ_TOKENS, .index = 1, .tag = e->tag };
		last1.u.tok.token = 11;
		last1.text_len = 150 - PF_CQE_TEXT;
		memcpy(last1.u.tok.text, t1, last1.text_len);
		post(f, &last1);
		struct pf_cqe last0 = { .kind = PF_CQ_TOKENS, .index = 0, .tag = e->tag };
		last0.u.tok.token = 10;
		last0.text_len = 200 - 2 * PF_CQE_TEXT;
		memcpy(last0.u.tok.text, t0, last0.text_len);
		post(f, &last0);
		post_finished(f, e->tag, 0, PF_FINISHED_STOP, false, "", 0, 1, 1);
		post_finished(f, e->tag, 1, PF_FINISHED_STOP, true, "", 0, 1, 1);
	} else if (starts(in, len, "lp")) {
		post_token(f, e->tag, 0, 3, "x", 1);
		for (int k = 0; k < 3; k++) {
			struct pf_cqe l = { .kind = PF_CQ_LOGPROBS, .tag = e->tag, .flags = k < 2 ? PF_CQE_MORE : 0 };
			l.u.lp.n = k < 2 ? 8 : 4;
			for (uint32_t j = 0; j < l.u.lp.n; j++) {
				l.u.lp.token[j] = (int32_t)(k * 8 + j);
				l.u.lp.logprob[j] = -(float)(k * 8 + j);
			}
			post(f, &l);
		}
		post_token(f, e->tag, 0, 4, "y", 1);
		struct pf_cqe l = { .kind = PF_CQ_LOGPROBS, .tag = e->tag };
		l.u.lp.n = 8;
		for (int j = 0; j < 8; j++)
			l.u.lp.token[j] = 100 + j;
		post(f, &l);
		post_finished(f, e->tag, 0, PF_FINISHED_STOP, true, "", 0, 1, 2);
	} else if (starts(in, len, "wait")) {
		int64_t t0 = (int64_t)time(NULL);
		while (!atomic_load(&f->c2d->cq_waiting) || !in_futex(atomic_load(&f->sleeper))) {
			if (atomic_load(&f->stop) || time(NULL) - t0 > TIMEOUT_MS / 1000) {
				fake_problem(f, "the client never set cq_waiting");
				break;
			}
			sched_yield();
		}
		echo(f, e->tag, 1, in, len);
	} else if (starts(in, len, "die")) {
		live = false;
	} else if (starts(in, len, "gone")) {
		atomic_store(&f->d2c->daemon_state, PF_DAEMON_GONE);
	} else if (starts(in, len, "drain")) {
		atomic_store(&f->d2c->daemon_state, PF_DAEMON_DRAINING);
		echo(f, e->tag, 1, in, len);
	} else {
		echo(f, e->tag, e->n > 0 && e->n <= 16 ? e->n : 1, in, len);
	}
out:
	free(in);
	return live;
}

static void handle_cancel(struct fake *f, const struct pf_sqe *e)
{
	atomic_fetch_add(&f->n_cancels, 1);
	for (int i = 0; i < f->n_held; i++) {
		if (f->held[i] != e->tag)
			continue;
		f->held[i] = f->held[--f->n_held];
		post_finished(f, e->tag, 0, PF_FINISHED_CANCELLED, true, "", 0, 1, 0);
		return;
	}
}

/* v3 TOKENIZE: one id per payload byte (the byte's value + 1000), in IDS
 * entries of PF_CQE_IDS; DETOKENIZE: "<id>," for each id, in TEXT entries —
 * both long enough to need MORE chains. */
static void handle_tokenize(struct fake *f, const struct pf_sqe *e)
{
	const uint8_t *in = f->payload + e->payload_off;
	if (e->op == PF_OP_TOKENIZE) {
		uint32_t off = 0;
		do {
			struct pf_cqe c = { .kind = PF_CQ_IDS, .tag = e->tag };
			uint32_t k = e->payload_len - off < PF_CQE_IDS ? e->payload_len - off : PF_CQE_IDS;
			c.flags = off + k < e->payload_len ? PF_CQE_MORE : PF_CQE_LAST;
			c.u.ids.n = k;
			for (uint32_t i = 0; i < k; i++)
				c.u.ids.id[i] = 1000 + in[off + i];
			post(f, &c);
			off += k;
		} while (off < e->payload_len);
	} else {
		char text[4096];
		size_t len = 0;
		for (uint32_t i = 0; i + 4 <= e->payload_len && len + 16 < sizeof(text); i += 4) {
			int32_t id;
			memcpy(&id, in + i, 4);
			len += (size_t)snprintf(text + len, sizeof(text) - len, "%d,", id);
		}
		size_t off = 0;
		do {
			struct pf_cqe c = { .kind = PF_CQ_TEXT, .tag = e->tag };
			size_t k = len - off < PF_CQE_TEXT ? len - off : PF_CQE_TEXT;
			c.flags = off + k < len ? PF_CQE_MORE : PF_CQE_LAST;
			c.text_len = (uint16_t)k;
			memcpy(c.u.tok.text, text + off, k);
			post(f, &c);
			off += k;
		} while (off < len);
	}
	fake_wake_client(f);
}

/* Returns entries consumed, or -1 when the fake must die. */
static int fake_poll_sq(struct fake *f)
{
	if (atomic_load(&f->paused))
		return 0;
	uint32_t n = pf_ring_avail(f->sq_n, f->sq_head, &f->c2d->sq_tail);
	for (uint32_t i = 0; i < n; i++) {
		struct pf_sqe e = f->sq[f->sq_head & (f->sq_n - 1)];
		bool live = true;
		if (e.op == PF_OP_SUBMIT)
			live = handle_submit(f, &e);
		else if (e.op == PF_OP_CANCEL)
			handle_cancel(f, &e);
		else if (e.op == PF_OP_TOKENIZE || e.op == PF_OP_DETOKENIZE)
			handle_tokenize(f, &e);
		else
			fake_problem(f, "unknown op %u", e.op);
		f->sq_head++;
		/* release: the payload was copied out above */
		pf_ring_consume(&f->d2c->sq_head, f->sq_head);
		if (!live)
			return -1;
	}
	if (n)
		fake_wake_client(f);
	return (int)n;
}

static int recv_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int make_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return -1;
	return fd;
}

/* Returns 0 when a session is set up, -1 when the client was turned away. */
static int fake_handshake(struct fake *f)
{
	struct pf_hello h;
	struct pf_welcome w;
	memset(&w, 0, sizeof(w));
	if (recv_full(f->cfd, &h, sizeof(h)))
		return -1;
	w.magic = PF_PROTO_MAGIC;
	w.version = PF_PROTO_VERSION;
	if (h.magic != PF_PROTO_MAGIC || h.version != PF_PROTO_VERSION || h.sizeof_sqe != sizeof(struct pf_sqe) ||
	    h.sizeof_cqe != sizeof(struct pf_cqe) || h.sizeof_c2d_hdr != sizeof(struct pf_c2d_hdr) ||
	    h.sizeof_d2c_hdr != sizeof(struct pf_d2c_hdr))
		fake_problem(f, "bad hello");
	if (f->reject_status) {
		w.status = f->reject_status;
		snprintf(w.message, sizeof(w.message), "%s", f->reject_msg ? f->reject_msg : "");
		send(f->cfd, &w, sizeof(w), MSG_NOSIGNAL);
		return -1;
	}
	f->sq_n = h.sq_entries ? h.sq_entries : PF_SQ_DEFAULT;
	f->cq_n = h.cq_entries ? h.cq_entries : PF_CQ_DEFAULT;
	f->payload_n = h.payload_bytes ? h.payload_bytes : PF_PAYLOAD_DEFAULT;
	f->c2d_bytes = pf_c2d_bytes(f->sq_n, f->payload_n);
	f->d2c_bytes = pf_d2c_bytes(f->cq_n);
	int c2d = make_memfd("fake-c2d", f->c2d_bytes + (f->bad_size == 2 ? 4096 : 0));
	int d2c = make_memfd("fake-d2c", f->d2c_bytes);
	if (c2d < 0 || d2c < 0 || fcntl(c2d, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		fake_problem(f, "memfd: %s", strerror(errno));
		return -1;
	}
	f->c2d = mmap(NULL, f->c2d_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c2d, 0);
	f->d2c = mmap(NULL, f->d2c_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, d2c, 0);
	if (f->c2d == MAP_FAILED || f->d2c == MAP_FAILED ||
	    fcntl(d2c, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		fake_problem(f, "mmap/seal: %s", strerror(errno));
		return -1;
	}
	f->sq = (struct pf_sqe *)(f->c2d + 1);
	f->payload = (uint8_t *)(f->sq + f->sq_n);
	f->cq = (struct pf_cqe *)(f->d2c + 1);
	f->sq_head = f->cq_tail = 0;
	f->n_held = 0;
	f->c2d->magic = f->d2c->magic = PF_PROTO_MAGIC;
	f->c2d->version = f->d2c->version = PF_PROTO_VERSION;
	f->d2c->sq_entries = f->sq_n;
	f->d2c->cq_entries = f->cq_n;
	f->d2c->payload_bytes = f->payload_n;

	w.sq_entries = f->sq_n;
	w.cq_entries = f->cq_n;
	w.payload_bytes = f->payload_n;
	w.c2d_bytes = (uint32_t)f->c2d_bytes + (f->bad_size == 1 ? 64 : 0);
	w.d2c_bytes = (uint32_t)f->d2c_bytes;
	w.client_id = 42;
	w.n_vocab = 1000;
	w.max_model_len = 2048;
	w.bos = 1;
	w.eos = 2;
	w.max_inflight = f->max_inflight;
	snprintf(w.model, sizeof(w.model), "fake-model");

	if (f->efd >= 0)
		close(f->efd);
	f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int fds[3] = { c2d, d2c, f->efd };
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = &w, .iov_len = sizeof(w) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf };
	int nf = f->n_fds ? f->n_fds : 3;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nf);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nf);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nf);
	if (sendmsg(f->cfd, &mh, MSG_NOSIGNAL) < 0)
		fake_problem(f, "sendmsg: %s", strerror(errno));
	close(c2d);
	close(d2c);
	return 0;
}

static void fake_end_session(struct fake *f)
{
	if (f->c2d && f->c2d != MAP_FAILED)
		munmap(f->c2d, f->c2d_bytes);
	if (f->d2c && f->d2c != MAP_FAILED)
		munmap(f->d2c, f->d2c_bytes);
	f->c2d = NULL;
	f->d2c = NULL;
	if (f->cfd >= 0)
		close(f->cfd);
	f->cfd = -1;
	atomic_store(&f->in_session, 0);
}

/* Serve one client until it leaves (0), the fake is stopped (0) or dies (-1). */
static int fake_serve(struct fake *f)
{
	atomic_fetch_add(&f->n_sessions, 1);
	atomic_store(&f->in_session, 1);
	for (;;) {
		if (atomic_load(&f->stop))
			return 0;
		int n = fake_poll_sq(f);
		if (n < 0)
			return -1;
		if (n > 0)
			continue;
		if (client_hung_up(f))
			return 0;
		/* idle: pinferd's sleep protocol */
		uint32_t seq = atomic_load(&f->c2d->sq_seq), ctl = atomic_load(&f->ctl);
		atomic_store(&f->d2c->daemon_sleeping, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if ((!atomic_load(&f->paused) && pf_ring_avail(f->sq_n, f->sq_head, &f->c2d->sq_tail)) ||
		    atomic_load(&f->stop)) {
			atomic_store(&f->d2c->daemon_sleeping, 0);
			continue;
		}
		_Atomic uint32_t *words[2] = { &f->c2d->sq_seq, &f->ctl };
		uint32_t vals[2] = { seq, ctl };
		int r = pf_futex_waitv(words, vals, 2, f->idle_ns);
		if (r == -ENOSYS)
			pf_futex_wait(&f->ctl, ctl, 1000000);
		atomic_store(&f->d2c->daemon_sleeping, 0);
		if (atomic_load(&f->c2d->sq_seq) != seq)
			atomic_fetch_add(&f->n_kicks, 1);
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	while (!atomic_load(&f->stop)) {
		struct pollfd p = { .fd = f->lfd, .events = POLLIN };
		if (poll(&p, 1, 20) <= 0)
			continue;
		f->cfd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (f->cfd < 0)
			continue;
		int r = fake_handshake(f) == 0 ? fake_serve(f) : 0;
		fake_end_session(f);
		if (r < 0) {
			/* die: like a crashed process, leave the socket file behind */
			close(f->lfd);
			f->lfd = -1;
			atomic_store(&f->dead, 1);
			break;
		}
	}
	return NULL;
}

static void fake_init(struct fake *f, const char *dir)
{
	memset(f, 0, sizeof(*f));
	f->lfd = f->cfd = f->efd = -1;
	f->tok_bytes = 5;
	f->idle_ns = 20 * 1000000;
	pthread_mutex_init(&f->lock, NULL);
	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	snprintf(f->path, sizeof(f->path), "%s/pinferd.sock", dir);
}

static void fake_start(struct fake *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	unlink(f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
	f->running = true;
}

static void fake_kick(struct fake *f)
{
	atomic_fetch_add(&f->ctl, 1);
	pf_futex_wake(&f->ctl, INT_MAX);
}

static void fake_stop(struct fake *f)
{
	if (f->running) {
		atomic_store(&f->stop, 1);
		fake_kick(f);
		pthread_join(f->th, NULL);
		f->running = false;
	}
	if (f->lfd >= 0)
		close(f->lfd);
	f->lfd = -1;
	if (f->efd >= 0)
		close(f->efd);
	f->efd = -1;
	unlink(f->path);
	pthread_mutex_destroy(&f->lock);
}

/* ---- helpers --------------------------------------------------------------------- */

struct env {
	char dir[64];
	struct fake f;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	snprintf(e->dir, sizeof(e->dir), "/tmp/pinfer-test-XXXXXX");
	if (!mkdtemp(e->dir)) {
		free(e);
		return -1;
	}
	fake_init(&e->f, e->dir);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	if (!e) /* the setup failed */
		return 0;
	fake_stop(&e->f);
	rmdir(e->dir);
	free(e);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int connect_to(struct fake *f, uint32_t sq, uint32_t cq, uint32_t payload, struct pinfer **ret, char *err,
		      size_t errlen)
{
	struct pinfer_connect_opts o;
	pinfer_connect_opts_init(&o);
	o.socket_path = f->path;
	o.sq_entries = sq;
	o.cq_entries = cq;
	o.payload_bytes = payload;
	o.err = err;
	o.err_len = errlen;
	return pinfer_connect(&o, ret);
}

static struct pinfer *must_connect(struct fake *f, uint32_t sq, uint32_t cq, uint32_t payload)
{
	char err[256] = "";
	struct pinfer *c = NULL;
	int r = connect_to(f, sq, cq, payload, &c, err, sizeof(err));
	if (r)
		fprintf(stderr, "connect: %d %s\n", r, err);
	assert_int_equal(r, 0);
	assert_non_null(c);
	return c;
}

/* Collected output of one request. */
struct result {
	char text[2][8192];
	size_t len[2];
	int n_tokens, n_finished, n_errors, n_logprobs;
	int32_t tokens[64];
	bool done;
	struct pinfer_event fin, err;
};

static void collect(struct result *r, const struct pinfer_event *ev)
{
	size_t i = ev->index < 2 ? ev->index : 1;
	if (ev->text_len && r->len[i] + ev->text_len < sizeof(r->text[i])) {
		memcpy(r->text[i] + r->len[i], ev->text, ev->text_len);
		r->len[i] += ev->text_len;
		r->text[i][r->len[i]] = 0;
	}
	assert_int_equal(ev->text[ev->text_len], 0);
	switch (ev->kind) {
	case PINFER_EVENT_TOKEN:
		if (r->n_tokens < 64)
			r->tokens[r->n_tokens] = ev->token;
		r->n_tokens++;
		break;
	case PINFER_EVENT_FINISHED:
		r->n_finished++;
		r->fin = *ev;
		break;
	case PINFER_EVENT_ERROR:
		r->n_errors++;
		r->err = *ev;
		break;
	case PINFER_EVENT_LOGPROBS:
		r->n_logprobs++;
		break;
	case PINFER_EVENT_SUSPENDED:
		fail_msg("unexpected SUSPENDED event: no daemon drains in this test");
		break;
	case PINFER_EVENT_TOKENIZED:
	case PINFER_EVENT_DETOKENIZED:
		fail_msg("unexpected tokenizer answer");
		break;
	}
	if (ev->last)
		r->done = true;
}

/* Read events until request `tag` is done; events must all be for tag. */
static void run_one(struct pinfer *c, uint64_t tag, struct result *r)
{
	memset(r, 0, sizeof(*r));
	while (!r->done) {
		struct pinfer_event ev;
		int rc = pinfer_next(c, &ev, TIMEOUT_MS);
		if (rc)
			fprintf(stderr, "pinfer_next: %d %s\n", rc, pinfer_last_error(c));
		assert_int_equal(rc, 0);
		assert_true(ev.tag == tag);
		collect(r, &ev);
	}
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_connect_welcome(void **state)
{
	struct env *e = *state;
	int fds0 = count_fds();
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 8, 64, 4096);
	assert_string_equal(pinfer_model_name(c), "fake-model");
	assert_int_equal(pinfer_n_vocab(c), 1000);
	assert_int_equal(pinfer_max_model_len(c), 2048);
	assert_int_equal(pinfer_bos(c), 1);
	assert_int_equal(pinfer_eos(c), 2);
	assert_int_equal(pinfer_inflight(c), 0);
	assert_string_equal(pinfer_socket_path(c), e->f.path);
	assert_string_equal(pinfer_last_error(c), "");
	assert_true(pinfer_fd(c) >= 0);
	/* nothing in flight: waiting could never end */
	struct pinfer_event ev;
	assert_int_equal(pinfer_next(c, &ev, -1), -ENOMSG);
	assert_int_equal(pinfer_poll_ready(c), 0);
	pinfer_close(c);
	pinfer_close(NULL);
	/* bad ring size wishes are refused locally */
	struct pinfer *c2 = NULL;
	char err[256];
	assert_int_equal(connect_to(&e->f, 6, 0, 0, &c2, err, sizeof(err)), -EINVAL);
	assert_null(c2);
	fake_stop(&e->f);
	assert_int_equal(count_fds(), fds0);
	assert_string_equal(e->f.problem, "");
}

static void test_instance_resolution(void **state)
{
	struct env *e = *state;
	char *saved = getenv("RUNTIME_DIRECTORY") ? strdup(getenv("RUNTIME_DIRECTORY")) : NULL;
	setenv("RUNTIME_DIRECTORY", e->dir, 1);
	snprintf(e->f.path, sizeof(e->f.path), "%s/pinferd-t1.sock", e->dir);
	fake_start(&e->f);
	struct pinfer_connect_opts o;
	struct pinfer *c = NULL;
	char err[256];
	pinfer_connect_opts_init(&o);
	o.instance = "t1";
	o.err = err;
	o.err_len = sizeof(err);
	assert_int_equal(pinfer_connect(&o, &c), 0);
	assert_string_equal(pinfer_socket_path(c), e->f.path);
	pinfer_close(c);
	o.instance = "../evil";
	assert_int_equal(pinfer_connect(&o, &c), -EINVAL);
	assert_non_null(strstr(err, "instance"));
	if (saved) {
		setenv("RUNTIME_DIRECTORY", saved, 1);
		free(saved);
	} else {
		unsetenv("RUNTIME_DIRECTORY");
	}
}

static void test_no_daemon(void **state)
{
	struct env *e = *state;
	struct pinfer *c = NULL;
	char err[256] = "";
	/* no socket file */
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(err, "no pinferd at"));
	assert_non_null(strstr(err, e->f.path));
	assert_non_null(strstr(err, "pinferd --model"));
	/* a stale socket file (daemon crashed) */
	fake_start(&e->f);
	struct pinfer *d = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	assert_int_equal(pinfer_submit_text(d, "die", 3, NULL, &tag), 0);
	struct pinfer_event ev;
	assert_int_equal(pinfer_next(d, &ev, TIMEOUT_MS), -ECONNRESET);
	pinfer_close(d);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "no pinferd at"));
}

static void test_handshake_timeout(void **state)
{
	struct env *e = *state;
	/* a listener that never accepts: connect() succeeds on the backlog,
	 * the welcome never comes */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->f.path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 4), 0);
	struct pinfer_connect_opts o;
	struct pinfer *c = NULL;
	char err[256];
	pinfer_connect_opts_init(&o);
	o.socket_path = e->f.path;
	o.timeout_ms = 200;
	o.err = err;
	o.err_len = sizeof(err);
	int64_t t0 = now_ms();
	assert_int_equal(pinfer_connect(&o, &c), -ETIMEDOUT);
	assert_true(now_ms() - t0 < 5000);
	assert_non_null(strstr(err, "did not answer"));
	close(l);
	unlink(e->f.path);
}

static void test_version_mismatch(void **state)
{
	struct env *e = *state;
	struct pinfer *c = NULL;
	char err[256];
	e->f.reject_status = PF_WELCOME_VERSION;
	e->f.reject_msg = "client protocol 1 is not supported; this pinferd speaks 2..3";
	fake_start(&e->f);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_null(c);
	assert_non_null(strstr(err, "client protocol 1 is not supported; this pinferd speaks 2..3"));
	fake_stop(&e->f);

	fake_init(&e->f, e->dir);
	e->f.reject_status = PF_WELCOME_DENIED;
	e->f.reject_msg = "uid 1234 is not on the allow list";
	fake_start(&e->f);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "allow list"));
}

static void test_bad_welcome(void **state)
{
	struct env *e = *state;
	struct pinfer *c = NULL;
	char err[256];
	int fds0 = count_fds();
	/* one fd instead of three */
	e->f.n_fds = 1;
	fake_start(&e->f);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "file descriptors"));
	fake_stop(&e->f);
	assert_int_equal(count_fds(), fds0);
	/* sizes in the welcome do not add up */
	fake_init(&e->f, e->dir);
	e->f.bad_size = 1;
	fake_start(&e->f);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -EPROTO);
	fake_stop(&e->f);
	/* the memfd is not the size announced */
	fake_init(&e->f, e->dir);
	e->f.bad_size = 2;
	fake_start(&e->f);
	assert_int_equal(connect_to(&e->f, 0, 0, 0, &c, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "segment is"));
	fake_stop(&e->f);
	assert_null(c);
	assert_int_equal(count_fds(), fds0);
}

static void test_stream_order_and_params(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	const char *prompt = "hello world, streaming tokens in order!";
	const char *stops[] = { "foo", "\n\n" };
	const int32_t stop_ids[] = { 5, 999 };
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.temperature = 0.5f;
	p.top_k = 40;
	p.top_p = 0.9f;
	p.min_p = 0.05f;
	p.repetition_penalty = 1.1f;
	p.presence_penalty = 0.5f;
	p.frequency_penalty = -0.5f;
	p.max_tokens = 100;
	p.min_tokens = 3;
	p.has_seed = true;
	p.seed = 1234567890123ull;
	p.stop = stops;
	p.n_stop = 2;
	p.stop_ids = stop_ids;
	p.n_stop_ids = 2;
	p.top_logprobs = 3;
	p.ignore_eos = true;
	p.priority = 7;
	p.deadline_ms = 1234;
	p.parse_special = true;
	uint64_t tag;
	assert_int_equal(pinfer_submit_text(c, prompt, strlen(prompt), &p, &tag), 0);
	assert_int_equal(tag, 1);
	assert_int_equal(pinfer_inflight(c), 1);
	struct result r;
	run_one(c, tag, &r);
	assert_string_equal(r.text[0], prompt);
	int want = (int)(strlen(prompt) + 4) / 5;
	assert_int_equal(r.n_tokens, want);
	for (int i = 0; i < want; i++)
		assert_int_equal(r.tokens[i], i);
	assert_int_equal(r.n_finished, 1);
	assert_true(r.fin.last);
	assert_int_equal(r.fin.reason, PINFER_FINISH_STOP);
	assert_int_equal(r.fin.usage.prompt_tokens, (int)strlen(prompt));
	assert_int_equal(r.fin.usage.cached_tokens, 1);
	assert_int_equal(r.fin.usage.generated_tokens, want);
	assert_true(fabs(r.fin.usage.ttft_s - 0.01) < 1e-6);
	assert_int_equal(pinfer_inflight(c), 0);

	pthread_mutex_lock(&e->f.lock);
	struct pf_sqe s = e->f.last_sqe;
	assert_int_equal(s.op, PF_OP_SUBMIT);
	assert_int_equal(s.input, PF_INPUT_TEXT);
	assert_int_equal(s.tag, tag);
	assert_true(s.temperature == 0.5f && s.top_p == 0.9f && s.min_p == 0.05f);
	assert_true(s.repetition_penalty == 1.1f && s.presence_penalty == 0.5f && s.frequency_penalty == -0.5f);
	assert_int_equal(s.top_k, 40);
	assert_int_equal(s.max_tokens, 100);
	assert_int_equal(s.min_tokens, 3);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.beam_width, 0);
	assert_true(s.length_penalty == 1.0f);
	assert_int_equal(s.seed, 1234567890123ull);
	assert_int_equal(s.priority, 7);
	assert_int_equal(s.deadline_ms, 1234);
	assert_int_equal(s.top_logprobs, 3);
	assert_int_equal(s.flags, PF_SQE_ADD_SPECIAL | PF_SQE_PARSE_SPECIAL | PF_SQE_IGNORE_EOS | PF_SQE_LOGPROBS |
					  PF_SQE_HAS_SEED);
	assert_int_equal(e->f.n_last_stops, 2);
	assert_string_equal(e->f.last_stops[0], "foo");
	assert_string_equal(e->f.last_stops[1], "\n\n");
	assert_int_equal(s.n_stop_ids, 2);
	assert_int_equal(e->f.last_stop_ids[0], 5);
	assert_int_equal(e->f.last_stop_ids[1], 999);
	pthread_mutex_unlock(&e->f.lock);

	/* several requests at once: events interleave, per-tag order holds */
	const char *prompts[3] = { "first request text", "second one, a bit longer than the first", "third" };
	uint64_t tags[3];
	struct result rs[3];
	memset(rs, 0, sizeof(rs));
	for (int i = 0; i < 3; i++)
		assert_int_equal(pinfer_submit_text(c, prompts[i], strlen(prompts[i]), NULL, &tags[i]), 0);
	assert_true(tags[0] != tags[1] && tags[1] != tags[2]);
	int done = 0;
	while (done < 3) {
		struct pinfer_event ev;
		assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
		int k = ev.tag == tags[0] ? 0 : ev.tag == tags[1] ? 1 : 2;
		assert_true(ev.tag == tags[k]);
		if (ev.kind == PINFER_EVENT_TOKEN)
			assert_int_equal(ev.token, rs[k].n_tokens);
		collect(&rs[k], &ev);
		done += ev.last;
	}
	for (int i = 0; i < 3; i++)
		assert_string_equal(rs[i].text[0], prompts[i]);

	/* n = 2: two sequences, LAST only on the second FINISHED */
	pinfer_params_init(&p);
	p.n = 2;
	assert_int_equal(pinfer_submit_text(c, "two seqs", 8, &p, &tag), 0);
	run_one(c, tag, &r);
	assert_string_equal(r.text[0], "two seqs");
	assert_string_equal(r.text[1], "two seqs");
	assert_int_equal(r.n_finished, 2);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_more_continuations(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct pinfer_event ev;
	assert_int_equal(pinfer_submit_text(c, "long", 4, NULL, &tag), 0);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_TOKEN);
	assert_int_equal(ev.token, 7);
	assert_int_equal(ev.text_len, 300);
	assert_false(ev.truncated);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(ev.text[i], 'a' + i % 26);
	assert_int_equal(ev.text[300], 0);
	assert_true(ev.logprob == -0.5f);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_FINISHED);
	assert_int_equal(ev.text_len, 200);
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(ev.text[i], 'A' + i % 26);
	assert_true(ev.last);

	/* chains of two sequences interleave */
	struct result r;
	assert_int_equal(pinfer_submit_text(c, "interleave", 10, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_int_equal(r.n_tokens, 2);
	assert_int_equal(r.len[0], 200);
	assert_int_equal(r.len[1], 150);
	for (size_t i = 0; i < 200; i++)
		assert_int_equal(r.text[0][i], '0');
	for (size_t i = 0; i < 150; i++)
		assert_int_equal(r.text[1][i], '1');
	/* seq 1's token completed first */
	assert_int_equal(r.tokens[0], 11);
	assert_int_equal(r.tokens[1], 10);

	/* logprobs: a MORE-chained group of 20 becomes one event; a lone entry one */
	assert_int_equal(pinfer_submit_text(c, "lp", 2, NULL, &tag), 0);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_TOKEN);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_LOGPROBS);
	assert_int_equal(ev.n_top, 20);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(ev.top_token[i], i);
		assert_true(ev.top_logprob[i] == -(float)i);
	}
	assert_int_equal(ev.text_len, 0);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_TOKEN);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_LOGPROBS);
	assert_int_equal(ev.n_top, 8);
	assert_int_equal(ev.top_token[7], 107);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_FINISHED);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

/* v3: tokenize/detokenize answers reassembled from MORE chains into one
 * event each, counted in flight until then; other events are unaffected */
static void test_tokenize(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct pinfer_event ev;
	size_t n;
	char text[100];
	for (int i = 0; i < 100; i++)
		text[i] = (char)('a' + i % 26);
	assert_int_equal(pinfer_submit_tokenize(c, text, sizeof(text), NULL, &tag), 0);
	assert_int_equal(pinfer_inflight(c), 1);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_TOKENIZED);
	assert_true(ev.tag == tag);
	assert_true(ev.last);
	assert_int_equal(ev.text_len, 0);
	assert_string_equal(ev.text, "");
	const int32_t *ids = pinfer_event_ids(c, &n);
	assert_int_equal(n, 100); /* 4 entries: 27 + 27 + 27 + 19 */
	for (int i = 0; i < 100; i++)
		assert_int_equal(ids[i], 1000 + text[i]);
	assert_int_equal(pinfer_inflight(c), 0);

	int32_t in[40];
	char want[512] = "";
	size_t wl = 0;
	for (int i = 0; i < 40; i++) {
		in[i] = 500 + i;
		wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%d,", in[i]);
	}
	assert_int_equal(pinfer_submit_detokenize(c, in, 40, NULL, &tag), 0);
	assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
	assert_int_equal(ev.kind, PINFER_EVENT_DETOKENIZED);
	assert_true(ev.last);
	assert_int_equal(ev.text_len, wl); /* 160 bytes: 2 TEXT entries */
	assert_string_equal(ev.text, want);
	assert_null(pinfer_event_ids(c, &n));
	assert_int_equal(n, 0);
	assert_int_equal(pinfer_inflight(c), 0);

	/* detokenize checks ids against the vocabulary like a token prompt */
	int32_t bad = -1;
	assert_int_equal(pinfer_submit_detokenize(c, &bad, 1, NULL, &tag), -EINVAL);
	assert_int_equal(pinfer_submit_detokenize(c, in, 0, NULL, &tag), -EINVAL);
	/* and a generation afterwards is as before */
	struct result r;
	assert_int_equal(pinfer_submit_text(c, "interleave", 10, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_int_equal(r.len[0], 200);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_error_cancel_inputs(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct result r;
	struct pinfer_event ev;

	assert_int_equal(pinfer_submit_text(c, "error", 5, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_int_equal(r.n_errors, 1);
	assert_int_equal(r.err.error, EINVAL);
	assert_string_equal(r.err.message, "fake: error requested");
	assert_int_equal(pinfer_inflight(c), 0);
	assert_int_equal(pinfer_next(c, &ev, 0), -ENOMSG);

	/* cancel a held request */
	assert_int_equal(pinfer_submit_text(c, "hold", 4, NULL, &tag), 0);
	assert_int_equal(pinfer_next(c, &ev, 0), -EAGAIN);
	assert_int_equal(pinfer_next(c, &ev, 50), -ETIMEDOUT);
	assert_int_equal(pinfer_cancel(c, tag), 0);
	run_one(c, tag, &r);
	assert_int_equal(r.fin.reason, PINFER_FINISH_CANCELLED);
	assert_int_equal(pinfer_cancel(c, tag), -ENOENT);
	assert_int_equal(pinfer_cancel(c, 9999), -ENOENT);
	assert_string_equal(pinfer_finish_reason_str(PINFER_FINISH_CANCELLED), "cancelled");

	/* token prompts */
	const int32_t ids[] = { 5, 6, 7 };
	assert_int_equal(pinfer_submit_tokens(c, ids, 3, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_int_equal(r.n_tokens, 3);
	assert_int_equal(r.tokens[2], 7);
	assert_string_equal(r.text[0], "<5><6><7>");
	const int32_t bad[] = { 5, 1000 };
	assert_int_equal(pinfer_submit_tokens(c, bad, 2, NULL, &tag), -EINVAL);
	assert_non_null(strstr(pinfer_last_error(c), "vocabulary"));
	assert_int_equal(pinfer_submit_tokens(c, ids, 0, NULL, &tag), -EINVAL);

	/* chat prompts */
	const struct pinfer_message msgs[] = { { "system", "Be brief." }, { "user", "Hi there" } };
	assert_int_equal(pinfer_submit_chat(c, msgs, 2, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_string_equal(r.text[0], "system:Be brief.|user:Hi there|");
	pthread_mutex_lock(&e->f.lock);
	assert_int_equal(e->f.last_sqe.input, PF_INPUT_CHAT);
	pthread_mutex_unlock(&e->f.lock);
	assert_int_equal(pinfer_submit_chat(c, msgs, 0, NULL, &tag), -EINVAL);

	/* no callback: events are consumed silently */
	assert_int_equal(pinfer_generate(c, "no callback", NULL, NULL, NULL), 0);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static int cb_collect(void *ctx, const struct pinfer_event *ev)
{
	collect(ctx, ev);
	return 0;
}

static int cb_cancel_first(void *ctx, const struct pinfer_event *ev)
{
	collect(ctx, ev);
	return ev->kind == PINFER_EVENT_TOKEN;
}

static void test_generate(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	struct result r;
	memset(&r, 0, sizeof(r));
	assert_int_equal(pinfer_generate(c, "callback text", NULL, cb_collect, &r), 0);
	assert_string_equal(r.text[0], "callback text");
	assert_true(r.done);
	memset(&r, 0, sizeof(r));
	const struct pinfer_message m[] = { { "user", "yo" } };
	assert_int_equal(pinfer_generate_chat(c, m, 1, NULL, cb_collect, &r), 0);
	assert_string_equal(r.text[0], "user:yo|");
	/* the callback cancels after the first token: the request ends CANCELLED */
	memset(&r, 0, sizeof(r));
	assert_int_equal(pinfer_generate(c, "slow", NULL, cb_cancel_first, &r), -ECANCELED);
	assert_int_equal(r.n_tokens, 1);
	assert_int_equal(r.fin.reason, PINFER_FINISH_CANCELLED);
	assert_true(r.done);
	/* ERROR → -code */
	memset(&r, 0, sizeof(r));
	assert_int_equal(pinfer_generate(c, "error", NULL, cb_collect, &r), -EINVAL);
	assert_non_null(strstr(pinfer_last_error(c), "error requested"));
	assert_int_equal(pinfer_stream(c, 12345, cb_collect, &r), -ENOENT);
	pinfer_close(c);
}

struct interrupt_ctx {
	struct result r;
	struct pinfer *c;
};

static int cb_interrupt_at_end(void *ctx, const struct pinfer_event *ev)
{
	struct interrupt_ctx *x = ctx;
	collect(&x->r, ev);
	if (ev->last)
		pinfer_interrupt(x->c); /* as a Ctrl-C that comes just as the reply ends */
	return 0;
}

/*
 * pinfer_interrupt() is what cancels a stream (an interrupted wait alone no
 * longer does: tests/integration/sigstop.sh stops and continues a client).
 * It works without any signal breaking the wait (as with SA_RESTART), and
 * one that comes as the request ends does not cancel the next request.
 */
static void test_interrupt(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct interrupt_ctx x;
	memset(&x, 0, sizeof(x));
	x.c = c;
	/* a held request: the interrupt is taken at the next sleep, the
	 * request is cancelled and its end still delivered */
	assert_int_equal(pinfer_submit_text(c, "hold", 4, NULL, &tag), 0);
	pinfer_interrupt(c);
	assert_int_equal(pinfer_stream(c, tag, cb_collect, &x.r), -EINTR);
	assert_true(x.r.done);
	assert_int_equal(x.r.fin.reason, PINFER_FINISH_CANCELLED);
	/* an interrupt as the reply ends goes with it: the next request (which
	 * makes the client sleep before it answers) runs to its end */
	memset(&x.r, 0, sizeof(x.r));
	assert_int_equal(pinfer_generate(c, "first reply", NULL, cb_interrupt_at_end, &x), 0);
	memset(&x.r, 0, sizeof(x.r));
	assert_int_equal(pinfer_generate(c, "wait for it", NULL, cb_collect, &x.r), 0);
	assert_string_equal(x.r.text[0], "wait for it");
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_param_validation(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 4096);
	struct pinfer_params p;
	uint64_t tag;
	char long_stop[66];
	memset(long_stop, 'x', 65);
	long_stop[65] = 0;
	const char *stops[9] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
	const char *bad_stop[1] = { long_stop };
	const char *empty_stop[1] = { "" };
	int32_t ids[17] = { 0 };

#define EXPECT_EINVAL(stmt)                                                          \
	do {                                                                         \
		pinfer_params_init(&p);                                              \
		stmt;                                                                \
		assert_int_equal(pinfer_submit_text(c, "x", 1, &p, &tag), -EINVAL);  \
		assert_true(pinfer_last_error(c)[0] != 0);                           \
	} while (0)
	EXPECT_EINVAL(p.stop = bad_stop; p.n_stop = 1);
	EXPECT_EINVAL(p.stop = empty_stop; p.n_stop = 1);
	EXPECT_EINVAL(p.stop = stops; p.n_stop = 9);
	EXPECT_EINVAL(p.stop_ids = ids; p.n_stop_ids = 17);
	EXPECT_EINVAL(ids[0] = 1000; p.stop_ids = ids; p.n_stop_ids = 1);
	EXPECT_EINVAL(p.top_p = 0);
	EXPECT_EINVAL(p.temperature = NAN);
	EXPECT_EINVAL(p.temperature = -1);
	EXPECT_EINVAL(p.min_p = 2);
	EXPECT_EINVAL(p.repetition_penalty = 0);
	EXPECT_EINVAL(p.presence_penalty = 3);
	EXPECT_EINVAL(p.max_tokens = 0);
	EXPECT_EINVAL(p.min_tokens = 17);
	EXPECT_EINVAL(p.n = 0);
	EXPECT_EINVAL(p.n = 2; p.beam_width = 2);
	EXPECT_EINVAL(p.top_logprobs = 21);
#undef EXPECT_EINVAL
	/* exactly at the limits is fine */
	memset(long_stop, 'y', 64);
	long_stop[64] = 0;
	pinfer_params_init(&p);
	p.stop = stops;
	p.n_stop = 8;
	p.stop_ids = ids;
	ids[0] = 999;
	p.n_stop_ids = 16;
	assert_int_equal(pinfer_submit_text(c, "x", 1, &p, &tag), 0);
	struct result r;
	run_one(c, tag, &r);
	pinfer_params_init(&p);
	p.stop = bad_stop;
	p.n_stop = 1;
	assert_int_equal(pinfer_submit_text(c, "x", 1, &p, &tag), 0);
	run_one(c, tag, &r);
	pthread_mutex_lock(&e->f.lock);
	assert_int_equal(strlen(e->f.last_stops[0]), 64);
	pthread_mutex_unlock(&e->f.lock);
	/* a prompt that can never fit the 4 KiB payload area */
	char *big = malloc(5000);
	memset(big, 'z', 5000);
	assert_int_equal(pinfer_submit_text(c, big, 5000, NULL, &tag), -E2BIG);
	assert_int_equal(pinfer_submit_text(c, big, 4096, NULL, &tag), 0);
	e->f.tok_bytes = 5;
	run_one(c, tag, &r);
	assert_int_equal(r.len[0], 4096);
	free(big);
	assert_int_equal(pinfer_inflight(c), 0);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_payload_wraparound(void **state)
{
	struct env *e = *state;
	e->f.tok_bytes = 64;
	fake_start(&e->f);
	/* small rings: the payload area wraps many times, the SQ and CQ fill */
	struct pinfer *c = must_connect(&e->f, 8, 64, 4096);
	enum { N = 600 };
	static char prompts[N + 1][1600];
	static size_t lens[N + 1];
	static struct result res[N + 1];
	memset(res, 0, sizeof(res));
	uint32_t rng = 12345;
	int submitted = 0, done = 0, eagain = 0;
	while (done < N) {
		if (submitted < N) {
			rng = rng * 1103515245 + 12345;
			size_t len = 1 + (rng >> 8) % 1500;
			int k = submitted + 1; /* tags are 1, 2, ... */
			for (size_t i = 0; i < len; i++)
				prompts[k][i] = (char)('!' + (k * 7 + i) % 90);
			/* avoid the fake's command words */
			prompts[k][0] = '#';
			lens[k] = len;
			uint64_t tag;
			int r = pinfer_submit_text(c, prompts[k], len, NULL, &tag);
			if (r == 0) {
				assert_int_equal(tag, (uint64_t)k);
				submitted++;
				continue;
			}
			assert_int_equal(r, -EAGAIN);
			eagain++;
		}
		struct pinfer_event ev;
		int r = pinfer_next(c, &ev, TIMEOUT_MS);
		assert_int_equal(r, 0);
		assert_true(ev.tag >= 1 && ev.tag <= (uint64_t)submitted);
		collect(&res[ev.tag], &ev);
		done += ev.last;
	}
	for (int k = 1; k <= N; k++) {
		assert_int_equal(res[k].len[0], lens[k]);
		assert_memory_equal(res[k].text[0], prompts[k], lens[k]);
	}
	assert_true(eagain > 0);
	assert_int_equal(atomic_load(&e->f.n_submits), N);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_eagain_when_full(void **state)
{
	struct env *e = *state;
	e->f.max_inflight = 0;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 8, 64, 4096);
	uint64_t tag;
	struct pinfer_event ev;
	/* the fake takes nothing: the SQ fills after 8 entries */
	atomic_store(&e->f.paused, 1);
	int n = 0;
	while (pinfer_submit_text(c, "abc", 3, NULL, &tag) == 0)
		n++;
	assert_int_equal(n, 8);
	assert_int_equal(pinfer_submit_text(c, "abc", 3, NULL, &tag), -EAGAIN);
	assert_non_null(strstr(pinfer_last_error(c), "submission ring full"));
	assert_int_equal(pinfer_cancel(c, 1), -EAGAIN);
	atomic_store(&e->f.paused, 0);
	fake_kick(&e->f);
	int done = 0;
	while (done < 8) {
		assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
		done += ev.last;
	}
	pinfer_close(c);

	/* the payload area fills first: 1000-byte prompts, 4096-byte area */
	c = must_connect(&e->f, 64, 64, 4096);
	atomic_store(&e->f.paused, 1);
	char buf[1000];
	memset(buf, 'q', sizeof(buf));
	n = 0;
	while (pinfer_submit_text(c, buf, sizeof(buf), NULL, &tag) == 0)
		n++;
	assert_int_equal(n, 4);
	assert_non_null(strstr(pinfer_last_error(c), "payload area full"));
	/* small ones still fit in the remaining bytes */
	assert_int_equal(pinfer_submit_text(c, "tiny", 4, NULL, &tag), 0);
	atomic_store(&e->f.paused, 0);
	fake_kick(&e->f);
	done = 0;
	while (done < 5) {
		assert_int_equal(pinfer_next(c, &ev, TIMEOUT_MS), 0);
		done += ev.last;
	}
	/* space is reclaimed: the same again works */
	assert_int_equal(pinfer_submit_text(c, buf, sizeof(buf), NULL, &tag), 0);
	struct result r;
	run_one(c, tag, &r);
	pinfer_close(c);
	fake_stop(&e->f);

	/* the daemon's in-flight quota */
	fake_init(&e->f, e->dir);
	e->f.max_inflight = 3;
	fake_start(&e->f);
	c = must_connect(&e->f, 0, 0, 0);
	assert_int_equal(pinfer_max_inflight(c), 3);
	uint64_t held[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pinfer_submit_text(c, "hold", 4, NULL, &held[i]), 0);
	assert_int_equal(pinfer_submit_text(c, "hold", 4, NULL, &tag), -EAGAIN);
	assert_non_null(strstr(pinfer_last_error(c), "in flight"));
	assert_int_equal(pinfer_cancel(c, held[1]), 0);
	run_one(c, held[1], &r);
	assert_int_equal(pinfer_submit_text(c, "ok", 2, NULL, &tag), 0);
	run_one(c, tag, &r);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_blocking_wakeup(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct result r;
	/* the fake answers only once we sleep in futex(): the wake must reach us */
	atomic_store(&e->f.sleeper, gettid());
	int w0 = atomic_load(&e->f.n_wakes);
	assert_int_equal(pinfer_submit_text(c, "wait for me", 11, NULL, &tag), 0);
	int64_t t0 = now_ms();
	run_one(c, tag, &r);
	assert_true(now_ms() - t0 < TIMEOUT_MS);
	assert_string_equal(r.text[0], "wait for me");
	assert_true(atomic_load(&e->f.n_wakes) > w0);
	/* and cleared it after waking */
	assert_int_equal(atomic_load(&e->f.c2d->cq_waiting), 0);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_no_wake_when_polling(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	/* a client that polls never sets cq_waiting, so the daemon never
	 * spends a futex wake on it */
	int w0 = atomic_load(&e->f.n_wakes);
	assert_int_equal(pinfer_submit_text(c, "polled", 6, NULL, &tag), 0);
	struct result r;
	memset(&r, 0, sizeof(r));
	int64_t t0 = now_ms();
	while (!r.done) {
		assert_true(now_ms() - t0 < TIMEOUT_MS);
		int ready = pinfer_poll_ready(c);
		assert_true(ready >= 0);
		if (!ready) {
			sched_yield();
			continue;
		}
		struct pinfer_event ev;
		int rc;
		while ((rc = pinfer_next(c, &ev, 0)) == 0)
			collect(&r, &ev);
		assert_true(rc == -EAGAIN || rc == -ENOMSG);
	}
	assert_string_equal(r.text[0], "polled");
	assert_int_equal(atomic_load(&e->f.n_wakes), w0);
	pinfer_close(c);
}

static void test_kick_sleeping_daemon(void **state)
{
	struct env *e = *state;
	e->f.idle_ns = 30ll * 1000000000; /* without our wake it would sleep 30 s */
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	/* wait until the fake announced it sleeps (in_session is stored after
	 * the segments are mapped, so f->d2c is valid once it reads 1) */
	int64_t t0 = now_ms();
	while (!atomic_load(&e->f.in_session) || !atomic_load(&e->f.d2c->daemon_sleeping)) {
		assert_true(now_ms() - t0 < TIMEOUT_MS);
		sched_yield();
	}
	int k0 = atomic_load(&e->f.n_kicks);
	uint64_t tag;
	struct result r;
	t0 = now_ms();
	assert_int_equal(pinfer_submit_text(c, "kick", 4, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_true(now_ms() - t0 < TIMEOUT_MS);
	assert_string_equal(r.text[0], "kick");
	assert_true(atomic_load(&e->f.n_kicks) > k0);
	pinfer_close(c);
	assert_string_equal(e->f.problem, "");
}

static void test_daemon_death_and_reconnect(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag, held;
	struct pinfer_event ev;
	assert_int_equal(pinfer_submit_text(c, "hold", 4, NULL, &held), 0);
	assert_int_equal(pinfer_submit_text(c, "die", 3, NULL, &tag), 0);
	/* blocked forever otherwise: the dead socket must end the wait */
	int64_t t0 = now_ms();
	assert_int_equal(pinfer_next(c, &ev, -1), -ECONNRESET);
	int64_t dt = now_ms() - t0;
	assert_true(dt < 3000);
	assert_non_null(strstr(pinfer_last_error(c), "went away"));
	assert_int_equal(pinfer_next(c, &ev, -1), -ECONNRESET);
	assert_int_equal(pinfer_next(c, &ev, 0), -ECONNRESET);
	assert_int_equal(pinfer_submit_text(c, "x", 1, NULL, &tag), -ECONNRESET);
	assert_int_equal(pinfer_cancel(c, held), -ECONNRESET);
	assert_int_equal(pinfer_poll_ready(c), -ECONNRESET);
	pinfer_close(c);
	fake_stop(&e->f);

	/* a new daemon on the same path: reconnecting works */
	fake_init(&e->f, e->dir);
	fake_start(&e->f);
	c = must_connect(&e->f, 0, 0, 0);
	struct result r;
	assert_int_equal(pinfer_submit_text(c, "again", 5, NULL, &tag), 0);
	run_one(c, tag, &r);
	assert_string_equal(r.text[0], "again");
	pinfer_close(c);
}

static void test_daemon_states(void **state)
{
	struct env *e = *state;
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	struct pinfer_event ev;
	/* draining: in-flight requests finish, new ones are refused */
	assert_int_equal(pinfer_submit_text(c, "drain", 5, NULL, &tag), 0);
	struct result r;
	run_one(c, tag, &r);
	assert_int_equal(pinfer_submit_text(c, "x", 1, NULL, &tag), -ESHUTDOWN);
	assert_non_null(strstr(pinfer_last_error(c), "draining"));
	pinfer_close(c);
	fake_stop(&e->f);

	/* GONE with the socket still open: the state word alone ends waits */
	fake_init(&e->f, e->dir);
	fake_start(&e->f);
	c = must_connect(&e->f, 0, 0, 0);
	assert_int_equal(pinfer_submit_text(c, "gone", 4, NULL, &tag), 0);
	int64_t t0 = now_ms();
	assert_int_equal(pinfer_next(c, &ev, -1), -ECONNRESET);
	assert_true(now_ms() - t0 < 3000);
	assert_non_null(strstr(pinfer_last_error(c), "shut down"));
	pinfer_close(c);
}

static void test_io_uring_futex_wait(void **state)
{
	struct env *e = *state;
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);
	if (r < 0) {
		printf("# io_uring unavailable (%s): futex-wait hook not exercised\n", strerror(-r));
		return;
	}
	fake_start(&e->f);
	struct pinfer *c = must_connect(&e->f, 0, 0, 0);
	uint64_t tag;
	/* the fake answers once cq_waiting is set, which prep does */
	assert_int_equal(pinfer_submit_text(c, "wait via io_uring", 17, NULL, &tag), 0);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	r = pinfer_prep_futex_wait(c, sqe);
	assert_int_equal(r, 0);
	io_uring_sqe_set_data64(sqe, 0xfeed);
	assert_int_equal(io_uring_submit(&ring), 1);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = TIMEOUT_MS / 1000 };
	assert_int_equal(io_uring_wait_cqe_timeout(&ring, &cqe, &ts), 0);
	assert_int_equal(io_uring_cqe_get_data64(cqe), 0xfeed);
	int res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (res == -EINVAL || res == -EOPNOTSUPP) {
		printf("# IORING_OP_FUTEX_WAIT unsupported here (%d): needs Linux >= 6.7\n", res);
	} else {
		/* 0: woken; -EAGAIN: the word changed before the wait was queued */
		assert_true(res == 0 || res == -EAGAIN);
		printf("# IORING_OP_FUTEX_WAIT completed with %d\n", res);
	}
	/* every wake is a hint: read until the request is done */
	struct result rr;
	run_one(c, tag, &rr);
	assert_string_equal(rr.text[0], "wait via io_uring");
	/* with completions already waiting, prep says so instead of sleeping */
	assert_int_equal(pinfer_submit_text(c, "ready", 5, NULL, &tag), 0);
	int64_t t0 = now_ms();
	while (pinfer_poll_ready(c) == 0 && now_ms() - t0 < TIMEOUT_MS)
		sched_yield();
	sqe = io_uring_get_sqe(&ring);
	assert_int_equal(pinfer_prep_futex_wait(c, sqe), -EAGAIN);
	run_one(c, tag, &rr);
	pinfer_close(c);
	io_uring_queue_exit(&ring);
	assert_string_equal(e->f.problem, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_connect_welcome, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instance_resolution, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_welcome, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_order_and_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_more_continuations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokenize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_cancel_inputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_param_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_payload_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eagain_when_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocking_wakeup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_wake_when_polling, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_sleeping_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_death_and_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_uring_futex_wait, setup, teardown),
	};
	return tu_run_group_tests("test_client", tests, NULL, NULL);
}
