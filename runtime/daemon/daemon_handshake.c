/*
 * daemon_handshake.c — registrations: accept a connection, read its hello,
 * answer with the welcome and the client's descriptors.
 *
 * Nothing here waits.  The control thread serves every client's liveness
 * (pidfd, socket hang-up) and the signals; a peer that sends its hello one
 * byte at a time, or nothing at all, must not hold it.  So the accepted
 * socket is non-blocking, whatever bytes are there are taken when the
 * control loop reports it readable, and the connection has one total
 * deadline (--handshake-timeout) from accept — not a timeout per read that
 * a trickle of bytes keeps restarting.  The control loops (daemon_control.c)
 * own the struct pf_handshake records and drive them with
 * pf_handshake_step() and pf_handshake_expire().
 *
 * A welcome is one small message on a fresh socket, so it fits the socket's
 * send buffer: it is sent with MSG_DONTWAIT and a failure drops the
 * connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "runtime/model/model.h"
#include "runtime/text/tok.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

int64_t pf_daemon_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int send_welcome(int sock, const struct pf_welcome *w, const int *fds, int nfd)
{
	struct iovec iov = { .iov_base = (void *)w, .iov_len = sizeof(*w) };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfd > 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*w) ? 0 : -EIO;
}

static void refuse(struct pf_daemon *d, int sock, uint16_t status, const char *msg)
{
	struct pf_welcome w = { .magic = PF_PROTO_MAGIC, .version = PF_PROTO_VERSION, .status = status };
	snprintf(w.message, sizeof(w.message), "%s", msg);
	send_welcome(sock, &w, NULL, 0);
	pf_daemon_log(d, PF_LOG_INFO, "refused a client: %s", msg);
}

static uint32_t pow2_clamp(uint32_t want, uint32_t def, uint32_t lo, uint32_t hi)
{
	if (want == 0)
		return def;
	uint32_t v = lo;
	while (v < want && v < hi)
		v <<= 1;
	return v;
}

/* A session that never reached the engine: its pidfd is ours to close (the
 * socket is closed by the caller). */
static void discard_session(struct pf_session *s)
{
	if (s->pidfd >= 0)
		close(s->pidfd);
	pf_session_free(s);
}

static void hs_free(struct pf_handshake *h, bool close_sock)
{
	if (close_sock)
		close(h->sock);
	free(h);
}

int pf_handshake_accept(struct pf_daemon *d, struct pf_handshake **ret)
{
	*ret = NULL;
	int sock = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (sock < 0) {
		int e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return -EAGAIN;
		if (e == ECONNABORTED || e == EPROTO || e == EINTR)
			return 0; /* that one connection: go on with the next */
		if ((e == EMFILE || e == ENFILE) && d->reserve_fd >= 0) {
			/* out of descriptors: the one kept in reserve lets us
			 * take the connection and say why instead of leaving the
			 * client hanging (and this loop spinning on it) */
			close(d->reserve_fd);
			d->reserve_fd = -1;
			sock = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (sock >= 0) {
				refuse(d, sock, PF_WELCOME_FULL, "pinferd has run out of file descriptors; try again later");
				close(sock);
			}
			d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			pf_daemon_log(d, PF_LOG_WARN, "out of file descriptors (%s): refused a client", strerror(e));
			return sock >= 0 ? 0 : -e;
		}
		pf_daemon_log(d, PF_LOG_WARN, "accept: %s", strerror(e));
		return -e; /* stop accepting for this round */
	}
	struct pf_handshake *h = calloc(1, sizeof(*h));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (!h || getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		free(h);
		close(sock);
		return 0;
	}
	h->sock = sock;
	h->pid = cred.pid;
	h->uid = cred.uid;
	h->gid = cred.gid;
	int64_t ms = __atomic_load_n(&d->cfg.handshake_timeout_ms, __ATOMIC_RELAXED);
	h->deadline_ns = pf_daemon_now_ns() + ms * 1000000;
	*ret = h;
	return 0;
}

/* uid's count of registered clients (control thread); NULL when a new
 * one cannot be had. */
static int32_t *uid_count(struct pf_daemon *d, uint32_t uid, bool create)
{
	for (int i = 0; i < d->n_uid_clients; i++)
		if (d->uid_clients[i].uid == uid)
			return &d->uid_clients[i].n;
	if (!create)
		return NULL;
	if (d->n_uid_clients == d->cap_uid_clients) {
		int nc = d->cap_uid_clients ? d->cap_uid_clients * 2 : 16;
		struct pf_uid_count *n = realloc(d->uid_clients, sizeof(*n) * (size_t)nc);
		if (!n)
			return NULL;
		d->uid_clients = n;
		d->cap_uid_clients = nc;
	}
	d->uid_clients[d->n_uid_clients] = (struct pf_uid_count){ .uid = uid };
	return &d->uid_clients[d->n_uid_clients++].n;
}

void pf_handshake_uid_gone(struct pf_daemon *d, uint32_t uid)
{
	int32_t *n = uid_count(d, uid, false);
	if (n && --*n <= 0) {
		/* the last one: drop the entry (the table holds connected uids) */
		struct pf_uid_count *e = (struct pf_uid_count *)((char *)n - offsetof(struct pf_uid_count, n));
		*e = d->uid_clients[--d->n_uid_clients];
	}
}

/* The hello is complete: answer it.  Returns the new session or NULL (the
 * connection was refused, or was a stats reader, and its socket is closed). */
static struct pf_session *finish(struct pf_daemon *d, struct pf_handshake *hs)
{
	const struct pf_hello *hp = &hs->hello;
	struct pf_hello h = *hp;
	int sock = hs->sock;
	if (h.magic != PF_PROTO_MAGIC) {
		refuse(d, sock, PF_WELCOME_INVALID, "malformed hello: not a pinfer client?");
		goto drop;
	}
	if (h.version < PF_PROTO_MIN_VERSION || h.version > PF_PROTO_VERSION || h.sizeof_sqe != sizeof(struct pf_sqe) ||
	    h.sizeof_cqe != sizeof(struct pf_cqe) || h.sizeof_c2d_hdr != sizeof(struct pf_c2d_hdr) ||
	    h.sizeof_d2c_hdr != sizeof(struct pf_d2c_hdr)) {
		char msg[160];
		snprintf(msg, sizeof(msg), "protocol mismatch: client speaks v%u, pinferd serves v%d..v%d; update libpinfer",
			 h.version, PF_PROTO_MIN_VERSION, PF_PROTO_VERSION);
		refuse(d, sock, PF_WELCOME_VERSION, msg);
		goto drop;
	}
	if (d->cfg.n_allow_uids || d->cfg.n_allow_gids) {
		/* (applies to stats readers too: anyone allowed to connect may
		 * read the stats, nobody else) */
		bool ok = hs->uid == 0;
		for (int i = 0; i < d->cfg.n_allow_uids; i++)
			ok |= d->cfg.allow_uids[i] == hs->uid;
		for (int i = 0; i < d->cfg.n_allow_gids; i++)
			ok |= d->cfg.allow_gids[i] == hs->gid;
		if (!ok) {
			refuse(d, sock, PF_WELCOME_DENIED, "this user is not on pinferd's allow list");
			goto drop;
		}
	}
	if (h.flags & PF_HELLO_STATS_ONLY) {
		/* a stats reader (pinfer-top, pinfer-exporter): one read-only
		 * descriptor, no session, nothing it can write */
		struct pf_welcome w = { .magic = PF_PROTO_MAGIC, .version = h.version, .status = PF_WELCOME_OK,
					.c2d_bytes = sizeof(struct pf_stats) };
		snprintf(w.model, sizeof(w.model), "%s", d->acc.model);
		send_welcome(sock, &w, &d->stats_fd, 1);
		pf_daemon_log(d, PF_LOG_DEBUG, "stats reader pid %d", hs->pid);
		goto drop;
	}
	if (atomic_load(&d->draining)) {
		refuse(d, sock, PF_WELCOME_DRAINING, "pinferd is draining; retry when it has restarted");
		goto drop;
	}
	if (atomic_load(&d->n_clients) >= d->cfg.max_clients) {
		refuse(d, sock, PF_WELCOME_FULL, "pinferd has its maximum number of clients");
		goto drop;
	}
	/* one user, however many processes and connections, gets a share;
	 * the rest of --max-clients stays for the others */
	int32_t *per_uid = uid_count(d, (uint32_t)hs->uid, true);
	int64_t uid_max = pf_daemon_uid_limit(&d->cfg, (uint32_t)hs->uid, pf_daemon_uid_clients(&d->cfg));
	if (!per_uid || (uid_max > 0 && *per_uid >= uid_max)) {
		char msg[160];
		snprintf(msg, sizeof(msg), "uid %u has its maximum of %lld clients (--max-clients-per-uid)",
			 (unsigned)hs->uid, (long long)uid_max);
		refuse(d, sock, PF_WELCOME_FULL, per_uid ? msg : "pinferd is out of memory");
		if (per_uid && *per_uid == 0)
			pf_handshake_uid_gone(d, (uint32_t)hs->uid); /* (an entry made just now) */
		goto drop;
	}
	uint32_t sq = pow2_clamp(h.sq_entries, d->cfg.sq_entries, 16, PF_SQ_MAX);
	uint32_t cq = pow2_clamp(h.cq_entries, d->cfg.cq_entries, 16, PF_CQ_MAX);
	uint32_t pl = h.payload_bytes ? (h.payload_bytes < 4096 ? 4096 : h.payload_bytes > PF_PAYLOAD_MAX ? PF_PAYLOAD_MAX
										: h.payload_bytes)
				      : d->cfg.payload_bytes;
	struct pf_session *s;
	if (pf_session_create(d, sock, hs->pid, hs->uid, hs->gid, sq, cq, pl, &s)) {
		refuse(d, sock, PF_WELCOME_ERROR, "pinferd could not create the shared segments");
		goto drop;
	}
	/* liveness: the kernel's pidfd for the peer, or one for its pid */
	socklen_t pl2 = sizeof(int);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &s->pidfd, &pl2) < 0)
		s->pidfd = (int)syscall(SYS_pidfd_open, hs->pid, 0);
	s->id = ++d->next_session_id;
	/* the segments carry the version spoken with this client */
	s->version = h.version;
	s->c2d->version = s->d2c->version = h.version;
	/* v2 wake descriptor: the read end of a pipe; the write end, which
	 * the engine thread's wakes use, never leaves this process.  Not an
	 * eventfd: that is one open file description for both sides, so the
	 * client could clear its O_NONBLOCK and saturate its counter and our
	 * next write(2) would block the engine thread (ARCHITECTURE.md). */
	int wake[2] = { -1, -1 };
	if (h.version >= 2) {
		if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) < 0) {
			discard_session(s);
			refuse(d, sock, PF_WELCOME_ERROR, "pinferd could not create the wake pipe");
			goto drop;
		}
		/* a wake is a hint: one page holds 512 of them */
		fcntl(wake[1], F_SETPIPE_SZ, 4096);
		s->efd = wake[1];
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", hs->pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fgets(s->comm, sizeof(s->comm), f))
			s->comm[strcspn(s->comm, "\n")] = '\0';
		fclose(f);
	}
	struct pf_welcome w = {
		.magic = PF_PROTO_MAGIC, .version = h.version, .status = PF_WELCOME_OK,
		.sq_entries = sq, .cq_entries = cq, .payload_bytes = pl,
		.c2d_bytes = (uint32_t)s->c2d_bytes, .d2c_bytes = (uint32_t)s->d2c_bytes, .client_id = s->id,
		.max_inflight = (uint32_t)__atomic_load_n(&d->cfg.max_inflight, __ATOMIC_RELAXED), .bos = -1, .eos = -1,
	};
	if (d->engine) {
		const struct pf_model *m = pf_engine_model(d->engine);
		const struct pf_tok *t = pf_engine_tok(d->engine);
		w.n_vocab = m->w.hp.n_vocab;
		w.max_model_len = pf_engine_max_model_len(d->engine);
		w.bos = pf_tok_bos(t);
		w.eos = pf_tok_eos(t);
		snprintf(w.model, sizeof(w.model), "%.95s", m->name);
	} else {
		w.n_vocab = 256;
		w.max_model_len = 1 << 20;
		snprintf(w.model, sizeof(w.model), "echo");
	}
	int fds[3] = { s->c2d_fd, s->d2c_fd, wake[0] };
	int sent = send_welcome(sock, &w, fds, wake[0] >= 0 ? 3 : 2);
	if (wake[0] >= 0)
		close(wake[0]); /* the client's now (or nobody's) */
	if (sent) {
		discard_session(s);
		goto drop;
	}
	/* the client holds its own descriptors now; ours are not needed */
	close(s->c2d_fd);
	close(s->d2c_fd);
	s->c2d_fd = s->d2c_fd = -1;
	atomic_fetch_add(&d->n_clients, 1);
	(*per_uid)++;
	pf_daemon_log(d, PF_LOG_INFO, "client %llu registered: pid %d uid %d (%s), protocol v%u",
		      (unsigned long long)s->id, hs->pid, hs->uid, s->comm, h.version);
	return s;
drop:
	close(sock);
	return NULL;
}

int pf_handshake_step(struct pf_daemon *d, struct pf_handshake *h, struct pf_session **ret)
{
	*ret = NULL;
	while (h->got < sizeof(h->hello)) {
		ssize_t n = recv(h->sock, (char *)&h->hello + h->got, sizeof(h->hello) - h->got, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			/* hung up (or failed) before a whole hello */
			refuse(d, h->sock, PF_WELCOME_INVALID, "malformed hello: not a pinfer client?");
			hs_free(h, true);
			return 1;
		}
		h->got += (uint32_t)n;
	}
	*ret = finish(d, h);
	hs_free(h, false); /* finish closed the socket or gave it to the session */
	return 1;
}

void pf_handshake_expire(struct pf_daemon *d, struct pf_handshake *h)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "pid %d sent no complete hello within --handshake-timeout (%u of %zu bytes)",
		 (int)h->pid, h->got, sizeof(h->hello));
	refuse(d, h->sock, PF_WELCOME_INVALID, msg);
	hs_free(h, true);
}

void pf_handshake_abandon(struct pf_handshake *h)
{
	if (h)
		hs_free(h, true);
}
