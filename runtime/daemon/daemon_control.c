/*
 * daemon_control.c — pinferd's control thread: the registration socket, the
 * handshake, client liveness (socket hang-up and pidfd) and signals.
 *
 * Its events — registrations, hang-ups, exits, signals — are not on the
 * per-token path (that is the rings), but they wait on many descriptors at
 * once.  With io_uring (the default where it works, see shm/uring.h) the
 * listening socket and the signalfd carry multishot polls and every client
 * two one-shot polls (socket, pidfd) that stay armed across iterations, so
 * an iteration costs one io_uring_enter however many clients there are.
 * Without io_uring the same events come from poll(2) over a set rebuilt
 * each iteration.
 *
 * Ownership: a client's socket and pidfd stay open until the engine thread
 * frees the session, so a descriptor number is never reused while the other
 * thread may still use it; once a session is handed to the engine as dead,
 * this thread never touches it again.  In the io_uring loop a client's
 * record (struct ctl_client, the polls' user_data) lives until both of its
 * polls have completed — the second is cancelled when the first reports
 * the client gone — so no completion ever points at freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "shm/path.h"
#include "runtime/text/tok.h"
#include "runtime/model/model.h"
#include "shm/wait.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

void pf_daemon_log(const struct pf_daemon *d, int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	if (level > atomic_load_explicit(&d->log_level, memory_order_relaxed))
		return;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld pinferd %s: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, names[level]);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* one write per line so lines from the two threads never interleave */
	size_t len = strlen(line);
	if (len < sizeof(line) - 1)
		line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

static void wake_engine(struct pf_daemon *d)
{
	atomic_fetch_add(&d->wake, 1);
	pf_futex_wake(&d->wake, 1);
}

int pf_daemon_listen(struct pf_daemon *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int r = pf_shm_socket_path(d->cfg.socket_path[0] ? d->cfg.socket_path : NULL,
				   d->cfg.instance[0] ? d->cfg.instance : NULL, d->socket_path, sizeof(d->socket_path));
	if (r) {
		pf_daemon_log(d, PF_LOG_ERROR, "bad socket path or instance name (%s)", strerror(-r));
		return r;
	}
	/* create the socket's folder (e.g. /run/pinfer) if it is missing */
	char dir[sizeof(d->socket_path)];
	snprintf(dir, sizeof(dir), "%s", d->socket_path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		for (char *p = dir + 1; *p; p++)
			if (*p == '/') {
				*p = '\0';
				mkdir(dir, 0755);
				*p = '/';
			}
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			pf_daemon_log(d, PF_LOG_ERROR, "cannot create %s: %s", dir, strerror(errno));
			return -errno;
		}
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->socket_path);
	/* non-blocking: the control loop accepts until EAGAIN */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EADDRINUSE) {
			close(fd);
			pf_daemon_log(d, PF_LOG_ERROR, "cannot bind %s: %s", d->socket_path, strerror(-r));
			return r;
		}
		/* a socket file is there: refuse if a daemon answers on it,
		 * else it is stale from a crash and can go */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			close(fd);
			pf_daemon_log(d, PF_LOG_ERROR, "another pinferd is already serving %s (use --instance NAME to run a second one)",
				      d->socket_path);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(d->socket_path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			close(fd);
			pf_daemon_log(d, PF_LOG_ERROR, "cannot bind %s: %s", d->socket_path, strerror(-r));
			return r;
		}
	}
	chmod(d->socket_path, (mode_t)d->cfg.socket_mode);
	if (listen(fd, 128) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	d->listen_fd = fd;
	return 0;
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
		n = sendmsg(sock, &m, MSG_NOSIGNAL);
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

/* Read the hello: all of it, within the socket's receive timeout.  EINTR
 * is retried — io_uring's task work interrupts this thread's blocking
 * calls when completions arrive on its ring. */
static ssize_t recv_hello(int sock, struct pf_hello *h)
{
	size_t got = 0;
	while (got < sizeof(*h)) {
		ssize_t n = recv(sock, (char *)h + got, sizeof(*h) - got, MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got ? (ssize_t)got : n;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* A session that never reached the engine: its pidfd is ours to close (the
 * socket is closed by the caller). */
static void discard_session(struct pf_session *s)
{
	if (s->pidfd >= 0)
		close(s->pidfd);
	pf_session_free(s);
}

/* Accept one connection (the listening socket is non-blocking) and run the
 * handshake.  Returns 0 with *ret set to the new session or NULL (refused,
 * a stats reader, a failed handshake), or -EAGAIN when nobody is waiting. */
static int accept_client(struct pf_daemon *d, struct pf_session **ret)
{
	*ret = NULL;
	int sock = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
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
			sock = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
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
	/* blocking (bounded by the timeouts below) even if the listening
	 * socket's O_NONBLOCK were inherited: the hello may not be there yet */
	int fl = fcntl(sock, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
	/* a client that connects and says nothing must not stall this thread */
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct pf_hello h;
	ssize_t n = recv_hello(sock, &h);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		goto drop;
	if (n != (ssize_t)sizeof(h) || h.magic != PF_PROTO_MAGIC) {
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
		bool ok = cred.uid == 0;
		for (int i = 0; i < d->cfg.n_allow_uids; i++)
			ok |= d->cfg.allow_uids[i] == cred.uid;
		for (int i = 0; i < d->cfg.n_allow_gids; i++)
			ok |= d->cfg.allow_gids[i] == cred.gid;
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
		pf_daemon_log(d, PF_LOG_DEBUG, "stats reader pid %d", cred.pid);
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
	uint32_t sq = pow2_clamp(h.sq_entries, d->cfg.sq_entries, 16, PF_SQ_MAX);
	uint32_t cq = pow2_clamp(h.cq_entries, d->cfg.cq_entries, 16, PF_CQ_MAX);
	uint32_t pl = h.payload_bytes ? (h.payload_bytes < 4096 ? 4096 : h.payload_bytes > PF_PAYLOAD_MAX ? PF_PAYLOAD_MAX
										: h.payload_bytes)
				      : d->cfg.payload_bytes;
	struct pf_session *s;
	if (pf_session_create(d, sock, cred.pid, cred.uid, cred.gid, sq, cq, pl, &s)) {
		refuse(d, sock, PF_WELCOME_ERROR, "pinferd could not create the shared segments");
		goto drop;
	}
	/* liveness: the kernel's pidfd for the peer, or one for its pid */
	socklen_t pl2 = sizeof(int);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &s->pidfd, &pl2) < 0)
		s->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	s->id = ++d->next_session_id;
	/* the segments carry the version spoken with this client */
	s->version = h.version;
	s->c2d->version = s->d2c->version = h.version;
	if (h.version >= 2) {
		/* non-blocking: the client can write to it too, and a counter it
		 * saturated must fail our wake, not block the engine thread */
		s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (s->efd < 0) {
			discard_session(s);
			refuse(d, sock, PF_WELCOME_ERROR, "pinferd could not create the wake eventfd");
			goto drop;
		}
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", cred.pid);
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
	int fds[3] = { s->c2d_fd, s->d2c_fd, s->efd };
	if (send_welcome(sock, &w, fds, s->efd >= 0 ? 3 : 2)) {
		discard_session(s);
		goto drop;
	}
	/* the client holds its own descriptors now; ours are not needed */
	close(s->c2d_fd);
	close(s->d2c_fd);
	s->c2d_fd = s->d2c_fd = -1;
	atomic_fetch_add(&d->n_clients, 1);
	pf_daemon_log(d, PF_LOG_INFO, "client %llu registered: pid %d uid %d (%s), protocol v%u",
		      (unsigned long long)s->id, cred.pid, cred.uid, s->comm, h.version);
	*ret = s;
	return 0;
drop:
	close(sock);
	return 0;
}

/* ---- events common to both loops -------------------------------------------------- */

static void on_signal(struct pf_daemon *d)
{
	struct signalfd_siginfo si;
	/* non-blocking signalfd: take every pending signal */
	while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			pf_daemon_reload(d);
		} else if (!atomic_load(&d->draining)) {
			pf_daemon_log(d, PF_LOG_INFO, "%s: draining (no new clients or requests; finishing in-flight ones)",
				      strsignal((int)si.ssi_signo));
			atomic_store(&d->draining, true);
			wake_engine(d);
		}
	}
}

static void hand_new(struct pf_daemon *d, struct pf_session *s)
{
	pthread_mutex_lock(&d->lock);
	s->next = d->inbox_new;
	d->inbox_new = s;
	pthread_mutex_unlock(&d->lock);
	wake_engine(d);
}

static void hand_dead(struct pf_daemon *d, struct pf_session *s, const char *why)
{
	pf_daemon_log(d, PF_LOG_INFO, "client %llu (pid %d) %s", (unsigned long long)s->id, s->pid, why);
	atomic_store(&s->dead, true);
	pthread_mutex_lock(&d->lock);
	s->dead_next = d->inbox_dead;
	d->inbox_dead = s;
	pthread_mutex_unlock(&d->lock);
	atomic_fetch_sub(&d->n_clients, 1);
	wake_engine(d);
}

/* The client's socket became readable without hanging up: nothing is
 * expected after the hello, so read and drop it.  Returns true when the
 * socket has in fact closed. */
static bool socket_closed(struct pf_session *s)
{
	char junk[256];
	ssize_t k = recv(s->sock, junk, sizeof(junk), MSG_DONTWAIT);
	return !(k > 0 || (k < 0 && (errno == EAGAIN || errno == EINTR)));
}

struct ctl_client {
	struct pf_session *s;        /* NULL once handed to the engine as dead */
	int polls;                   /* io_uring loop: polls in flight that name us */
	struct ctl_client *next;
};

/* ---- poll(2) loop (io_uring unavailable) ---------------------------------------------- */

static void control_poll(struct pf_daemon *d)
{
	struct ctl_client *clients = NULL;
	int n_clients = 0;
	struct pollfd *pfd = NULL;
	struct ctl_client **who = NULL;
	int cap = 0;

	while (!atomic_load(&d->stop)) {
		int need = 2 + 2 * n_clients;
		if (need > cap) {
			cap = need * 2;
			struct pollfd *np = realloc(pfd, sizeof(*pfd) * (size_t)cap);
			if (np)
				pfd = np;
			struct ctl_client **nw = np ? realloc(who, sizeof(*who) * (size_t)cap) : NULL;
			if (nw)
				who = nw;
			if (!np || !nw) {
				pf_daemon_log(d, PF_LOG_ERROR, "control thread out of memory");
				atomic_store(&d->stop, true);
				break;
			}
		}
		int n = 0;
		pfd[n] = (struct pollfd){ .fd = d->listen_fd, .events = POLLIN };
		who[n++] = NULL;
		pfd[n] = (struct pollfd){ .fd = d->signal_fd, .events = POLLIN };
		who[n++] = NULL;
		for (struct ctl_client *c = clients; c; c = c->next) {
			pfd[n] = (struct pollfd){ .fd = c->s->sock, .events = POLLIN | POLLRDHUP };
			who[n++] = c;
			pfd[n] = (struct pollfd){ .fd = c->s->pidfd, .events = POLLIN };
			who[n++] = c;
		}
		int r = poll(pfd, (nfds_t)n, 200);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (pfd[1].revents & POLLIN)
			on_signal(d);
		if (pfd[0].revents & POLLIN) {
			struct pf_session *s;
			while (accept_client(d, &s) == 0) {
				struct ctl_client *c = s ? calloc(1, sizeof(*c)) : NULL;
				if (s && !c) {
					close(s->sock);
					discard_session(s);
					atomic_fetch_sub(&d->n_clients, 1);
				} else if (c) {
					c->s = s;
					c->next = clients;
					clients = c;
					n_clients++;
					hand_new(d, s);
				}
			}
		}
		/* liveness: hang-up, data (none is expected after the hello),
		 * or the client's process exiting */
		for (int i = 2; i < n; i++) {
			struct ctl_client *c = who[i];
			if (!pfd[i].revents || !c || !c->s)
				continue;
			struct pf_session *s = c->s;
			bool pid = pfd[i].fd == s->pidfd;
			if (!pid && !(pfd[i].revents & (POLLHUP | POLLRDHUP | POLLERR)) && !socket_closed(s))
				continue;
			c->s = NULL;
			hand_dead(d, s, pid ? "exited" : "disconnected");
		}
		/* forget clients handed over as dead */
		for (struct ctl_client **pp = &clients; *pp;) {
			if (!(*pp)->s) {
				struct ctl_client *dead = *pp;
				*pp = dead->next;
				free(dead);
				n_clients--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	while (clients) {
		struct ctl_client *c = clients;
		clients = c->next;
		free(c);
	}
	free(pfd);
	free(who);
}

/* ---- io_uring loop ---------------------------------------------------------------------- */

/* user_data: small constants for the daemon's own descriptors, else a
 * struct ctl_client pointer (8-aligned) with the descriptor in bit 0 */
#define UD_LISTEN 0x10u
#define UD_SIGNAL 0x20u
#define UD_CANCEL 0x30u
#define UD_PIDFD 1u

struct ctl_uring {
	struct pf_daemon *d;
	struct io_uring ring;
	struct ctl_client *clients;
};

static struct io_uring_sqe *ctl_sqe(struct ctl_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static int arm_poll(struct ctl_uring *u, int fd, unsigned events, uint64_t ud, bool multishot)
{
	struct io_uring_sqe *sqe = ctl_sqe(u);
	if (!sqe)
		return -EBUSY;
	if (multishot)
		io_uring_prep_poll_multishot(sqe, fd, events);
	else
		io_uring_prep_poll_add(sqe, fd, events);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

static void arm_client(struct ctl_uring *u, struct ctl_client *c, bool sock, bool pidfd)
{
	if (sock && !arm_poll(u, c->s->sock, POLLIN | POLLRDHUP, (uint64_t)(uintptr_t)c, false))
		c->polls++;
	if (pidfd && c->s->pidfd >= 0 && !arm_poll(u, c->s->pidfd, POLLIN, (uint64_t)(uintptr_t)c | UD_PIDFD, false))
		c->polls++;
}

/* The client is gone: hand its session over and cancel its other poll. */
static void client_gone(struct ctl_uring *u, struct ctl_client *c, const char *why)
{
	struct pf_session *s = c->s;
	c->s = NULL;
	hand_dead(u->d, s, why);
	struct io_uring_sqe *sqe = ctl_sqe(u);
	if (sqe) {
		/* every poll that names c; the one that just completed is no
		 * longer there, so this finds only the other */
		io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, UD_CANCEL);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		struct io_uring_sqe *sqe2 = ctl_sqe(u);
		if (sqe2) {
			io_uring_prep_cancel64(sqe2, (uint64_t)(uintptr_t)c | UD_PIDFD, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe2, UD_CANCEL);
			sqe2->flags |= IOSQE_CQE_SKIP_SUCCESS;
		}
	}
}

static void on_client_cqe(struct ctl_uring *u, struct ctl_client *c, bool pidfd, int res)
{
	c->polls--;
	if (c->s) {
		if (res == -ECANCELED) {
			/* not ours to cancel while the client lives: re-arm */
			arm_client(u, c, !pidfd, pidfd);
		} else if (pidfd) {
			client_gone(u, c, "exited");
		} else if (res < 0 || (res & (POLLHUP | POLLRDHUP | POLLERR)) || socket_closed(c->s)) {
			client_gone(u, c, "disconnected");
		} else {
			arm_client(u, c, true, false);
		}
	}
	if (!c->s && c->polls == 0) {
		for (struct ctl_client **pp = &u->clients; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		free(c);
	}
}

static void on_accept(struct ctl_uring *u)
{
	struct pf_session *s;
	while (accept_client(u->d, &s) == 0) {
		if (!s)
			continue;
		struct ctl_client *c = calloc(1, sizeof(*c));
		if (!c) {
			close(s->sock);
			discard_session(s);
			atomic_fetch_sub(&u->d->n_clients, 1);
			continue;
		}
		c->s = s;
		c->next = u->clients;
		u->clients = c;
		arm_client(u, c, true, true);
		hand_new(u->d, s);
	}
}

/* Returns 0 when stopped normally, or a negative errno when io_uring failed
 * at setup (the caller then falls back to poll). */
static int control_uring(struct pf_daemon *d)
{
	struct ctl_uring u = { .d = d };
	/* cooperative task running: completions are processed when we enter
	 * the ring, instead of interrupting the handshake's blocking calls */
	int r = io_uring_queue_init(256, &u.ring, IORING_SETUP_COOP_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(256, &u.ring, 0);
	if (r < 0)
		return r;
	if ((r = arm_poll(&u, d->listen_fd, POLLIN, UD_LISTEN, true)) ||
	    (r = arm_poll(&u, d->signal_fd, POLLIN, UD_SIGNAL, true))) {
		io_uring_queue_exit(&u.ring);
		return r;
	}
	/* the engine sets stop when it has drained; look every 200 ms */
	struct __kernel_timespec tick = { .tv_nsec = 200000000 };
	while (!atomic_load(&d->stop)) {
		struct io_uring_cqe *cqe;
		r = io_uring_submit_and_wait_timeout(&u.ring, &cqe, 1, &tick, NULL);
		if (r < 0 && r != -ETIME && r != -EINTR) {
			pf_daemon_log(d, PF_LOG_ERROR, "control loop: io_uring wait failed: %s", strerror(-r));
			atomic_store(&d->stop, true);
			break;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&u.ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			bool more = cqe->flags & IORING_CQE_F_MORE;
			seen++;
			if (ud == UD_LISTEN || ud == UD_SIGNAL) {
				if (ud == UD_LISTEN)
					on_accept(&u);
				else
					on_signal(d);
				/* a multishot poll that ended (e.g. overflow) is re-armed */
				if (!more)
					arm_poll(&u, ud == UD_LISTEN ? d->listen_fd : d->signal_fd, POLLIN, ud, true);
			} else if (ud != UD_CANCEL) {
				on_client_cqe(&u, (struct ctl_client *)(uintptr_t)(ud & ~(uint64_t)UD_PIDFD), ud & UD_PIDFD, res);
			}
		}
		io_uring_cq_advance(&u.ring, seen);
	}
	/* tearing the ring down cancels every poll still armed */
	io_uring_queue_exit(&u.ring);
	while (u.clients) {
		struct ctl_client *c = u.clients;
		u.clients = c->next;
		free(c);
	}
	return 0;
}

void *pf_daemon_control_main(void *arg)
{
	struct pf_daemon *d = arg;
	if (d->uring.usable) {
		int r = control_uring(d);
		if (r == 0)
			return NULL;
		pf_daemon_log(d, PF_LOG_WARN, "control loop: io_uring setup failed (%s); using poll(2)", strerror(-r));
	}
	control_poll(d);
	return NULL;
}
