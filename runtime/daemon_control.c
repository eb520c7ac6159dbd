/*
 * daemon_control.c — pinferd's control thread: the registration socket, the
 * handshake, client liveness (socket hang-up and pidfd) and signals.
 *
 * It waits with poll(2) over a small, rebuilt-per-iteration set of fds: the
 * listening socket, the signalfd, and each live client's socket and pidfd.
 * None of this is on the per-token path (that is the rings), so a plain
 * poll loop keeps it simple and works where io_uring is disabled.
 *
 * Ownership: a client's socket and pidfd stay open until the engine thread
 * frees the session, so a descriptor number is never reused while the other
 * thread may still use it; once a session is handed to the engine as dead,
 * this thread never touches it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "path.h"
#include "tok.h"
#include "model.h"
#include "wait.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

void pf_daemon_log(const struct pf_daemon *d, int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	if (level > d->log_level)
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
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

static int send_welcome(int sock, const struct pf_welcome *w, int fd1, int fd2)
{
	struct iovec iov = { .iov_base = (void *)w, .iov_len = sizeof(*w) };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd1 >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		int nfd = fd2 >= 0 ? 2 : 1;
		c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
		m.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
		int fds[2] = { fd1, fd2 };
		memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
	}
	ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
	return n == (ssize_t)sizeof(*w) ? 0 : -EIO;
}

static void refuse(struct pf_daemon *d, int sock, uint16_t status, const char *msg)
{
	struct pf_welcome w = { .magic = PF_PROTO_MAGIC, .version = PF_PROTO_VERSION, .status = status };
	snprintf(w.message, sizeof(w.message), "%s", msg);
	send_welcome(sock, &w, -1, -1);
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

/* Accept one client and run the handshake.  Returns the session or NULL. */
static struct pf_session *accept_client(struct pf_daemon *d)
{
	int sock = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (sock < 0)
		return NULL;
	/* a client that connects and says nothing must not stall this thread */
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct pf_hello h;
	ssize_t n = recv(sock, &h, sizeof(h), MSG_WAITALL);
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
		send_welcome(sock, &w, d->stats_fd, -1);
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
		.max_inflight = (uint32_t)d->cfg.max_inflight, .bos = -1, .eos = -1,
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
	if (send_welcome(sock, &w, s->c2d_fd, s->d2c_fd)) {
		pf_session_free(s);
		goto drop;
	}
	/* the client holds its own descriptors now; ours are not needed */
	close(s->c2d_fd);
	close(s->d2c_fd);
	s->c2d_fd = s->d2c_fd = -1;
	atomic_fetch_add(&d->n_clients, 1);
	pf_daemon_log(d, PF_LOG_INFO, "client %llu registered: pid %d uid %d (%s)", (unsigned long long)s->id, cred.pid,
		      cred.uid, s->comm);
	return s;
drop:
	close(sock);
	return NULL;
}

struct ctl_client {
	struct pf_session *s;
	struct ctl_client *next;
};

void *pf_daemon_control_main(void *arg)
{
	struct pf_daemon *d = arg;
	struct ctl_client *clients = NULL;
	int n_clients = 0;
	struct pollfd *pfd = NULL;
	struct ctl_client **who = NULL;
	int cap = 0;

	while (!atomic_load(&d->stop)) {
		int need = 2 + 2 * n_clients;
		if (need > cap) {
			cap = need * 2;
			pfd = realloc(pfd, sizeof(*pfd) * (size_t)cap);
			who = realloc(who, sizeof(*who) * (size_t)cap);
			if (!pfd || !who) {
				pf_daemon_log(d, PF_LOG_ERROR, "control thread out of memory");
				atomic_store(&d->stop, true);
				break;
			}
		}
		int n = 0;
		pfd[n] = (struct pollfd){ .fd = atomic_load(&d->draining) ? -1 : d->listen_fd, .events = POLLIN };
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
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					pf_daemon_log(d, PF_LOG_INFO, "SIGHUP: configuration reload is not supported yet; ignoring");
				} else {
					pf_daemon_log(d, PF_LOG_INFO, "%s: draining (no new clients or requests; finishing in-flight ones)",
						      strsignal((int)si.ssi_signo));
					atomic_store(&d->draining, true);
					wake_engine(d);
				}
			}
		}
		if (pfd[0].revents & POLLIN) {
			struct pf_session *s = accept_client(d);
			struct ctl_client *c = s ? calloc(1, sizeof(*c)) : NULL;
			if (s && !c) {
				pf_session_free(s);
			} else if (c) {
				c->s = s;
				c->next = clients;
				clients = c;
				n_clients++;
				pthread_mutex_lock(&d->lock);
				s->next = d->inbox_new;
				d->inbox_new = s;
				pthread_mutex_unlock(&d->lock);
				wake_engine(d);
			}
		}
		/* liveness: hang-up, data (none is expected after the hello),
		 * or the client's process exiting */
		for (int i = 2; i < n; i++) {
			struct ctl_client *c = who[i];
			if (!pfd[i].revents || !c || !c->s)
				continue;
			struct pf_session *s = c->s;
			if (pfd[i].fd == s->sock && !(pfd[i].revents & (POLLHUP | POLLRDHUP | POLLERR))) {
				char junk[256];
				ssize_t k = recv(s->sock, junk, sizeof(junk), MSG_DONTWAIT);
				if (k > 0 || (k < 0 && (errno == EAGAIN || errno == EINTR)))
					continue;
			}
			pf_daemon_log(d, PF_LOG_INFO, "client %llu (pid %d) %s", (unsigned long long)s->id, s->pid,
				      pfd[i].fd == s->pidfd ? "exited" : "disconnected");
			atomic_store(&s->dead, true);
			c->s = NULL;
			pthread_mutex_lock(&d->lock);
			s->dead_next = d->inbox_dead;
			d->inbox_dead = s;
			pthread_mutex_unlock(&d->lock);
			atomic_fetch_sub(&d->n_clients, 1);
			wake_engine(d);
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
	return NULL;
}
