/*
 * hostile.c — a deliberately malicious pinfer client for the fault tests.
 *
 * It registers like a real client (raw protocol, no libpinfer), then:
 *   1. checks the daemon's seals: d2c cannot be mapped writable, neither
 *      segment can be truncated or grown;
 *   2. for --seconds, writes garbage into everything it can write: SQ
 *      entries (random ops, kinds, lengths, offsets, token ids out of the
 *      vocabulary, unterminated strings), the payload area, its SQ tail (far
 *      beyond the head, backwards), its CQ head, the waiting flag and the
 *      doorbell word — and reads whatever comes back.
 * Exit status 0 when the seals held and the daemon kept its side of the
 * protocol readable (or disconnected us, which is also allowed); the test
 * script checks separately that the daemon is alive and serves others.
 *
 * Other modes (--mode) for the fault tests:
 *   noread   submit one long request properly, then never read completions
 *            for --seconds: the daemon must pause it, cap its memory and
 *            cancel it after --stall-timeout;
 *   quota    submit max_inflight + 1 requests at once: the last must get an
 *            EBUSY error completion;
 *   v1       an honest client of the previous protocol version (--proto 1):
 *            greedy "Say hello." for 16 tokens, sleeping on the futex as v1
 *            clients do; prints the reply as `pinfer generate` would, so the
 *            test can compare it with a current client's;
 *   wakeblock  clear O_NONBLOCK on the wake descriptor, saturate it if it
 *            can be written (an eventfd's counter), then keep requests
 *            running with cq_waiting asking for eventfd wakes: the
 *            daemon's wake must never block (wakefd.sh).
 *
 * Garbage mode also abuses the v2 wake descriptor: it tries to saturate it
 * (an eventfd's counter, with daemons that shared one; the read end of a
 * pipe refuses the write) and sets random cq_waiting bits.
 *
 * usage: hostile --socket PATH [--seconds N] [--seed S] [--mode garbage|noread|quota|v1|wakeblock] [--proto V]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shm/proto.h"
#include "shm/wait.h"

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double now(void);

/* A valid greedy text request at payload offset `off`. */
static void put_request(struct pf_sqe *e, uint8_t *payload, uint32_t off, uint64_t tag, int32_t max_tokens)
{
	static const char text[] = "Write a very long story about a lighthouse keeper.";
	memset(e, 0, sizeof(*e));
	memcpy(payload + off, text, sizeof(text) - 1);
	e->op = PF_OP_SUBMIT;
	e->input = PF_INPUT_TEXT;
	e->flags = PF_SQE_IGNORE_EOS;
	e->payload_off = off;
	e->payload_len = sizeof(text) - 1;
	e->tag = tag;
	e->temperature = 0;
	e->top_p = 1;
	e->repetition_penalty = 1;
	e->length_penalty = 1;
	e->max_tokens = max_tokens;
	e->n = 1;
}

static int well_formed_mode(const char *mode, int sock, int wake_fd, const struct pf_welcome *w, struct pf_c2d_hdr *ch,
			    const struct pf_d2c_hdr *dh, struct pf_sqe *sq, uint8_t *payload, double secs)
{
	const struct pf_cqe *cq = (const struct pf_cqe *)(dh + 1);
	if (!strcmp(mode, "wakeblock")) {
		if (wake_fd < 0)
			return 2;
		/* the wake descriptor made blocking and, if we can write it,
		 * filled to the brim: a daemon that write(2)s the same open file
		 * description blocks in its next wake */
		int fl = fcntl(wake_fd, F_GETFL);
		if (fl >= 0)
			fcntl(wake_fd, F_SETFL, fl & ~O_NONBLOCK);
		uint64_t big = 0xfffffffffffffffeULL;
		bool filled = write(wake_fd, &big, sizeof(big)) == sizeof(big);
		uint32_t head = 0, tail = 0, finished = 0, got = 0;
		double end = now() + secs;
		while (now() < end) {
			if (tail == finished) { /* one request at a time */
				put_request(&sq[tail & (w->sq_entries - 1)], payload, 0, 500 + tail, 32);
				atomic_store(&ch->sq_tail, ++tail);
				atomic_fetch_add(&ch->sq_seq, 1);
				pf_futex_wake(&ch->sq_seq, 1);
			}
			uint32_t t = atomic_load(&dh->cq_tail);
			for (; head != t; head++) {
				const struct pf_cqe *e = &cq[head & (w->cq_entries - 1)];
				got++;
				if ((e->kind == PF_CQ_FINISHED && (e->flags & PF_CQE_LAST) && !(e->flags & PF_CQE_MORE)) ||
				    e->kind == PF_CQ_ERROR)
					finished++;
			}
			atomic_store(&ch->cq_head, head);
			/* ask for eventfd wakes, every time (the daemon may clear it) */
			atomic_store(&ch->cq_waiting, PF_WAIT_EVENTFD);
			usleep(2000);
		}
		printf("hostile: wake descriptor made blocking%s; %u requests finished, %u completions read\n",
		       filled ? " and its counter saturated" : " (not writable by us)", finished, got);
		return 0;
	}
	if (!strncmp(mode, "malformed", 9)) {
		/* "malformedN": N entries with an unknown op, each a malformed
		 * submission, reading the errors as they come; then a few seconds
		 * to see whether the daemon hangs up */
		const int count = atoi(mode + 9);
		uint32_t head = 0, tail = 0;
		int sent = 0;
		double end = now() + secs, settle = 0;
		while (now() < end) {
			if (sent < count && tail - atomic_load(&dh->sq_head) < w->sq_entries) {
				struct pf_sqe *e = &sq[tail & (w->sq_entries - 1)];
				memset(e, 0, sizeof(*e));
				e->op = 99;
				e->tag = tail;
				atomic_store(&ch->sq_tail, ++tail);
				atomic_fetch_add(&ch->sq_seq, 1);
				pf_futex_wake(&ch->sq_seq, 1);
				if (++sent == count)
					settle = now() + 3;
			}
			head = atomic_load(&dh->cq_tail);
			atomic_store(&ch->cq_head, head);
			struct pollfd p = { .fd = sock, .events = POLLIN };
			char junk;
			if (poll(&p, 1, 0) > 0 && recv(sock, &junk, 1, MSG_DONTWAIT) == 0) {
				printf("hostile: disconnected after %d malformed entries\n", sent);
				return 0;
			}
			if (settle > 0 && now() > settle)
				break;
			usleep(sent < count ? 100 : 2000);
		}
		printf("hostile: still connected after %d malformed entries\n", sent);
		return 0;
	}
	if (!strcmp(mode, "noread")) {
		put_request(&sq[0], payload, 0, 1, 2000);
		atomic_store(&ch->sq_tail, 1);
		atomic_fetch_add(&ch->sq_seq, 1);
		/* never advance cq_head; watch for the daemon's verdict */
		double end = now() + secs;
		uint32_t last = 0;
		while (now() < end) {
			last = atomic_load(&dh->cq_tail);
			if (last > w->cq_entries) {
				printf("hostile: the daemon lapped the completion ring (%u > %u)!\n", last, w->cq_entries);
				return 1;
			}
			for (uint32_t i = 0; i < last; i++)
				if (cq[i].kind == PF_CQ_FINISHED && cq[i].u.fin.reason == PF_FINISHED_STALLED) {
					printf("hostile: never read; after %u completions the daemon paused us and ended the request (stalled)\n",
					       i);
					return 0;
				}
			usleep(20000);
		}
		printf("hostile: never read; the daemon posted %u completions (ring holds %u), no stall verdict\n", last,
		       w->cq_entries);
		return 3;
	}
	if (!strcmp(mode, "quota")) {
		uint32_t n = w->max_inflight + 1;
		if (n > w->sq_entries)
			return 2;
		for (uint32_t i = 0; i < n; i++)
			put_request(&sq[i], payload, i * 64, 100 + i, 64);
		atomic_store(&ch->sq_tail, n);
		atomic_fetch_add(&ch->sq_seq, 1);
		double end = now() + secs;
		uint32_t head = 0;
		while (now() < end) {
			uint32_t t = atomic_load(&dh->cq_tail);
			for (; head != t; head++) {
				const struct pf_cqe *e = &cq[head & (w->cq_entries - 1)];
				if (e->kind == PF_CQ_ERROR) {
					printf("hostile: request %llu refused: %s (code %d)\n", (unsigned long long)e->tag,
					       e->u.err.message, e->u.err.code);
					return e->u.err.code == EBUSY ? 0 : 1;
				}
			}
			atomic_store(&ch->cq_head, head);
			usleep(1000);
		}
		(void)sock;
		printf("hostile: no quota error within %.0f s\n", secs);
		return 1;
	}
	if (!strcmp(mode, "v1")) {
		static const char text[] = "Say hello.";
		struct pf_sqe *e = &sq[0];
		memset(e, 0, sizeof(*e));
		memcpy(payload, text, sizeof(text) - 1);
		e->op = PF_OP_SUBMIT;
		e->input = PF_INPUT_TEXT;
		e->flags = PF_SQE_IGNORE_EOS | PF_SQE_ADD_SPECIAL;
		e->payload_len = sizeof(text) - 1;
		e->tag = 1;
		e->top_p = 1;
		e->repetition_penalty = 1;
		e->length_penalty = 1;
		e->max_tokens = 16;
		e->n = 1;
		atomic_store(&ch->sq_tail, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load(&dh->daemon_sleeping))
			atomic_fetch_add(&ch->sq_seq, 1), pf_futex_wake(&ch->sq_seq, 1);
		char out[4096];
		size_t len = 0;
		uint32_t head = 0;
		double end = now() + secs;
		while (now() < end) {
			uint32_t t = atomic_load(&dh->cq_tail);
			for (; head != t; head++) {
				const struct pf_cqe *q = &cq[head & (w->cq_entries - 1)];
				if (q->kind == PF_CQ_ERROR) {
					printf("hostile: v1 request failed: %s\n", q->u.err.message);
					return 1;
				}
				const uint8_t *tx = q->kind == PF_CQ_TOKENS ? q->u.tok.text : q->u.fin.text;
				if ((q->kind == PF_CQ_TOKENS || q->kind == PF_CQ_FINISHED) && q->text_len <= PF_CQE_TEXT &&
				    len + q->text_len < sizeof(out)) {
					memcpy(out + len, tx, q->text_len);
					len += q->text_len;
				}
				if (q->kind == PF_CQ_FINISHED && (q->flags & PF_CQE_LAST) && !(q->flags & PF_CQE_MORE)) {
					atomic_store(&ch->cq_head, head + 1);
					fwrite(out, 1, len, stdout);
					if (!len || out[len - 1] != '\n')
						fputc('\n', stdout);
					return 0;
				}
			}
			atomic_store(&ch->cq_head, head);
			/* the v1 sleep: announce, re-check (Dekker), futex-wait */
			atomic_store(&ch->cq_waiting, PF_WAIT_FUTEX);
			atomic_thread_fence(memory_order_seq_cst);
			uint32_t seq = atomic_load(&dh->cq_seq);
			if (atomic_load(&dh->cq_tail) == head)
				pf_futex_wait((_Atomic uint32_t *)&dh->cq_seq, seq, 100000000);
			atomic_store(&ch->cq_waiting, 0);
		}
		printf("hostile: v1 request did not finish within %.0f s\n", secs);
		return 1;
	}
	fprintf(stderr, "hostile: unknown mode %s\n", mode);
	return 2;
}

static double now(void)
{
	/* monotonic seconds */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *mode = "garbage";
	double secs = 5;
	int proto = PF_PROTO_VERSION;
	rng = 42;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			rng = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--mode"))
			mode = argv[i + 1];
		else if (!strcmp(argv[i], "--proto"))
			proto = atoi(argv[i + 1]);
	}
	if (!path) {
		fprintf(stderr, "usage: hostile --socket PATH [--seconds N] [--seed S]\n");
		return 2;
	}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("hostile: connect");
		return 1;
	}
	struct pf_hello h = {
		.magic = PF_PROTO_MAGIC, .version = (uint16_t)proto, .sizeof_sqe = sizeof(struct pf_sqe),
		.sizeof_cqe = sizeof(struct pf_cqe), .sizeof_c2d_hdr = sizeof(struct pf_c2d_hdr),
		.sizeof_d2c_hdr = sizeof(struct pf_d2c_hdr),
	};
	if (send(s, &h, sizeof(h), 0) != sizeof(h))
		return 1;
	struct pf_welcome w;
	int fds[3] = { -1, -1, -1 };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = { &w, sizeof(w) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	if (recvmsg(s, &m, MSG_WAITALL) != sizeof(w) || w.status != PF_WELCOME_OK) {
		fprintf(stderr, "hostile: registration failed\n");
		return 1;
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "hostile: no descriptors\n");
		return 1;
	}
	int nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	int want = proto >= 2 ? 3 : 2;
	if (nfd != want || w.version != proto) {
		fprintf(stderr, "hostile: protocol v%d registration got %d descriptors and version %u (want %d, v%d)\n", proto,
			nfd, w.version, want, proto);
		return 1;
	}
	memcpy(fds, CMSG_DATA(c), (size_t)nfd * sizeof(int));

	/* 1. the seals */
	int bad = 0;
	if (mmap(NULL, w.d2c_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0) != MAP_FAILED) {
		fprintf(stderr, "hostile: d2c could be mapped writable!\n");
		bad = 1;
	}
	if (ftruncate(fds[0], 4096) == 0 || ftruncate(fds[1], 4096) == 0 || ftruncate(fds[0], (off_t)w.c2d_bytes * 2) == 0) {
		fprintf(stderr, "hostile: a segment could be resized!\n");
		bad = 1;
	}
	if (fcntl(fds[0], F_ADD_SEALS, F_SEAL_WRITE) == 0) {
		fprintf(stderr, "hostile: could add seals (F_SEAL_SEAL missing)\n");
		bad = 1;
	}
	uint8_t *c2d = mmap(NULL, w.c2d_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	const uint8_t *d2c = mmap(NULL, w.d2c_bytes, PROT_READ, MAP_SHARED, fds[1], 0);
	if (c2d == MAP_FAILED || d2c == MAP_FAILED) {
		perror("hostile: mmap");
		return 1;
	}
	struct pf_c2d_hdr *ch = (struct pf_c2d_hdr *)c2d;
	const struct pf_d2c_hdr *dh = (const struct pf_d2c_hdr *)d2c;
	struct pf_sqe *sq = (struct pf_sqe *)(ch + 1);
	uint8_t *payload = (uint8_t *)(sq + w.sq_entries);

	if (strcmp(mode, "garbage"))
		return bad ? bad : well_formed_mode(mode, s, fds[2], &w, ch, dh, sq, payload, secs);

	/* 2. garbage */
	double end = now() + secs;
	uint64_t rounds = 0, cqes = 0;
	uint32_t tail = 0;
	while (now() < end) {
		rounds++;
		int what = (int)(rnd() % 10);
		for (uint32_t i = 0; i < w.sq_entries; i++) {
			if (rnd() & 1)
				continue;
			uint8_t *e = (uint8_t *)&sq[i];
			for (size_t k = 0; k < sizeof(struct pf_sqe); k += 8) {
				uint64_t v = rnd();
				memcpy(e + k, &v, 8);
			}
			/* half the time make it look almost valid */
			if (rnd() & 1) {
				sq[i].op = (uint8_t)(1 + rnd() % 2);
				sq[i].input = (uint8_t)(1 + rnd() % 3);
				sq[i].payload_off = (uint32_t)(rnd() % (w.payload_bytes + 64));
				sq[i].payload_len = (uint32_t)(rnd() % 512);
				sq[i].n = (int32_t)(rnd() % 4);
				sq[i].max_tokens = (int32_t)(rnd() % 8);
				sq[i].temperature = 0;
				sq[i].top_p = 1;
				sq[i].repetition_penalty = 1;
			}
		}
		for (uint32_t k = 0; k < 4096 && k < w.payload_bytes; k += 8) {
			uint64_t v = rnd();
			if (rnd() % 3 == 0)
				v = 0x7fffffff7fffffffULL; /* token ids far out of the vocabulary */
			memcpy(payload + rnd() % (w.payload_bytes - 8), &v, 8);
		}
		if (what == 0)
			tail += (uint32_t)rnd(); /* far beyond the head */
		else if (what == 1)
			tail -= 5; /* backwards */
		else
			tail += (uint32_t)(rnd() % w.sq_entries);
		atomic_store(&ch->sq_tail, tail);
		atomic_store(&ch->cq_head, (uint32_t)rnd());
		atomic_store(&ch->cq_waiting, (uint32_t)rnd());
		if (fds[2] >= 0 && what == 3) {
			/* saturate the wake eventfd: the daemon's writes must fail
			 * with EAGAIN, never block its engine thread */
			uint64_t big = 0xfffffffffffffffeULL;
			ssize_t k = write(fds[2], &big, sizeof(big));
			(void)k;
		}
		atomic_fetch_add(&ch->sq_seq, 1);
		/* read what the daemon says, as a client would */
		uint32_t ct = atomic_load(&dh->cq_tail);
		const struct pf_cqe *cq = (const struct pf_cqe *)(dh + 1);
		volatile uint8_t sink = 0;
		for (uint32_t i = 0; i < 8; i++)
			sink ^= cq[(ct - i) & (w.cq_entries - 1)].kind;
		(void)sink;
		cqes = ct;
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (poll(&p, 1, 0) > 0) {
			char junk[16];
			if (recv(s, junk, sizeof(junk), MSG_DONTWAIT) == 0) {
				printf("hostile: the daemon disconnected us after %llu rounds\n", (unsigned long long)rounds);
				return bad;
			}
		}
		usleep(200);
	}
	printf("hostile: %llu rounds of garbage; daemon posted up to cq_tail %llu; seals %s\n",
	       (unsigned long long)rounds, (unsigned long long)cqes, bad ? "BROKEN" : "held");
	return bad;
}
