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
 * Registrations never block this thread (daemon_handshake.c): a connection
 * waits for its hello like any other event — a poll on its socket — and
 * the loops drop it when its --handshake-timeout deadline passes, checked
 * every iteration (each loop wakes at least every 200 ms).
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "shm/path.h"
#include "shm/wait.h"

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
		/* something is there.  Only a socket may be replaced, and only
		 * a stale one (from a crash): anything else is the user's file,
		 * and a typo in --socket must not delete it */
		struct stat st;
		if (lstat(d->socket_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			close(fd);
			pf_daemon_log(d, PF_LOG_ERROR, "--socket %s: that path exists and is not a socket; "
				      "refusing to replace it (choose a free path)", d->socket_path);
			return -EEXIST;
		}
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

/* ---- events common to both loops -------------------------------------------------- */

static void on_signal(struct pf_daemon *d)
{
	struct signalfd_siginfo si;
	/* non-blocking signalfd: take every pending signal */
	while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			pf_daemon_reload(d);
		} else if (!atomic_load(&d->draining)) {
			pf_daemon_log(d, PF_LOG_INFO, "%s: draining (no new clients or requests; finishing in-flight ones "
				      "for up to %d s; %s again saves them now and exits)",
				      strsignal((int)si.ssi_signo), d->cfg.drain_timeout_s,
				      si.ssi_signo == SIGINT ? "Ctrl-C" : "the signal");
			atomic_store(&d->draining, true);
			wake_engine(d);
		} else if (!atomic_load(&d->drain_now)) {
			/* the user does not want to wait for the drain (a second
			 * Ctrl-C on a foreground pinferd) */
			pf_daemon_log(d, PF_LOG_INFO, "%s again: saving the requests still running and exiting now",
				      strsignal((int)si.ssi_signo));
			atomic_store(&d->drain_now, true);
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
	/* (before the hand-over: from then on the engine may free s) */
	pf_handshake_uid_gone(d, (uint32_t)s->uid);
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
	struct pf_handshake *hs;     /* while registering, else NULL */
	struct pf_session *s;        /* registered; NULL before and once handed to the engine as dead */
	int polls;                   /* io_uring loop: polls in flight that name us */
	bool cancelling;             /* io_uring loop: the handshake's deadline passed, its poll is being cancelled */
	struct ctl_client *next;
};

/* Take a new connection into the loop's list; NULL when out of memory
 * (the connection is dropped). */
static struct ctl_client *add_client(struct ctl_client **list, struct pf_handshake *h)
{
	struct ctl_client *c = calloc(1, sizeof(*c));
	if (!c) {
		pf_handshake_abandon(h);
		return NULL;
	}
	c->hs = h;
	c->next = *list;
	*list = c;
	return c;
}

/* Advance c's handshake.  Returns true when it is over (c->hs is NULL and,
 * if it registered, c->s the new session, not yet handed to the engine). */
static bool hs_progress(struct pf_daemon *d, struct ctl_client *c)
{
	struct pf_session *s;
	if (pf_handshake_step(d, c->hs, &s) == 0)
		return false;
	c->hs = NULL;
	c->s = s;
	return true;
}

/* ---- poll(2) loop (io_uring unavailable) ---------------------------------------------- */

enum { K_HELLO, K_SOCK, K_PIDFD };

static void control_poll(struct pf_daemon *d)
{
	struct ctl_client *clients = NULL;
	int n_clients = 0;
	struct pollfd *pfd = NULL;
	struct ctl_client **who = NULL;
	unsigned char *kind = NULL;
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
			unsigned char *nk = nw ? realloc(kind, (size_t)cap) : NULL;
			if (nk)
				kind = nk;
			if (!np || !nw || !nk) {
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
		int timeout_ms = 200;
		int64_t now = pf_daemon_now_ns();
		for (struct ctl_client *c = clients; c; c = c->next) {
			if (c->hs) {
				int64_t left = (c->hs->deadline_ns - now) / 1000000 + 1;
				if (left < timeout_ms)
					timeout_ms = left > 0 ? (int)left : 0;
				kind[n] = K_HELLO;
				pfd[n] = (struct pollfd){ .fd = c->hs->sock, .events = POLLIN | POLLRDHUP };
				who[n++] = c;
				continue;
			}
			kind[n] = K_SOCK;
			pfd[n] = (struct pollfd){ .fd = c->s->sock, .events = POLLIN | POLLRDHUP };
			who[n++] = c;
			kind[n] = K_PIDFD;
			pfd[n] = (struct pollfd){ .fd = c->s->pidfd, .events = POLLIN };
			who[n++] = c;
		}
		int r = poll(pfd, (nfds_t)n, timeout_ms);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (pfd[1].revents & POLLIN))
			on_signal(d);
		if (r > 0 && (pfd[0].revents & POLLIN)) {
			struct pf_handshake *h;
			while (pf_handshake_accept(d, &h) == 0) {
				struct ctl_client *c = h ? add_client(&clients, h) : NULL;
				if (!c)
					continue;
				n_clients++;
				/* the hello is usually there already */
				if (hs_progress(d, c) && c->s)
					hand_new(d, c->s);
			}
		}
		for (int i = 2; r > 0 && i < n; i++) {
			struct ctl_client *c = who[i];
			if (!pfd[i].revents)
				continue;
			if (kind[i] == K_HELLO) {
				if (c->hs && hs_progress(d, c) && c->s)
					hand_new(d, c->s);
				continue;
			}
			/* liveness: hang-up, data (none is expected after the
			 * hello), or the client's process exiting */
			struct pf_session *s = c->s;
			if (!s)
				continue;
			bool pid = kind[i] == K_PIDFD;
			if (!pid && !(pfd[i].revents & (POLLHUP | POLLRDHUP | POLLERR)) && !socket_closed(s))
				continue;
			c->s = NULL;
			hand_dead(d, s, pid ? "exited" : "disconnected");
		}
		/* handshakes past their deadline; then forget clients that are
		 * done (handed over as dead, or never registered) */
		now = pf_daemon_now_ns();
		for (struct ctl_client **pp = &clients; *pp;) {
			struct ctl_client *c = *pp;
			if (c->hs && now >= c->hs->deadline_ns) {
				pf_handshake_expire(d, c->hs);
				c->hs = NULL;
			}
			if (!c->s && !c->hs) {
				*pp = c->next;
				free(c);
				n_clients--;
			} else {
				pp = &c->next;
			}
		}
	}
	while (clients) {
		struct ctl_client *c = clients;
		clients = c->next;
		pf_handshake_abandon(c->hs);
		free(c);
	}
	free(pfd);
	free(who);
	free(kind);
}

/* ---- io_uring loop ---------------------------------------------------------------------- */

/* user_data: small constants for the daemon's own descriptors, else a
 * struct ctl_client pointer (8-aligned) with the descriptor in bits 0-1 */
#define UD_LISTEN 0x10u
#define UD_SIGNAL 0x20u
#define UD_CANCEL 0x30u
#define UD_PIDFD 1u
#define UD_HELLO 2u
#define UD_BITS 3u

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

static void cancel_ud(struct ctl_uring *u, uint64_t ud)
{
	struct io_uring_sqe *sqe = ctl_sqe(u);
	if (sqe) {
		io_uring_prep_cancel64(sqe, ud, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, UD_CANCEL);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
}

/* The client is gone: hand its session over and cancel its other poll. */
static void client_gone(struct ctl_uring *u, struct ctl_client *c, const char *why)
{
	struct pf_session *s = c->s;
	c->s = NULL;
	hand_dead(u->d, s, why);
	/* every poll that names c; the one that just completed is no longer
	 * there, so this finds only the other */
	cancel_ud(u, (uint64_t)(uintptr_t)c);
	cancel_ud(u, (uint64_t)(uintptr_t)c | UD_PIDFD);
}

static void forget_if_done(struct ctl_uring *u, struct ctl_client *c)
{
	if (c->s || c->hs || c->polls)
		return;
	for (struct ctl_client **pp = &u->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	free(c);
}

/* Advance a handshake: wait for more of the hello, or start watching the
 * registered client's liveness. */
static void uring_hello(struct ctl_uring *u, struct ctl_client *c)
{
	if (!hs_progress(u->d, c)) {
		if (!arm_poll(u, c->hs->sock, POLLIN | POLLRDHUP, (uint64_t)(uintptr_t)c | UD_HELLO, false)) {
			c->polls++;
		} else {
			pf_handshake_expire(u->d, c->hs);
			c->hs = NULL;
		}
		return;
	}
	if (c->s) {
		arm_client(u, c, true, true);
		hand_new(u->d, c->s);
	}
}

static void on_client_cqe(struct ctl_uring *u, struct ctl_client *c, unsigned what, int res)
{
	c->polls--;
	if (what == UD_HELLO) {
		if (c->hs && (c->cancelling || pf_daemon_now_ns() >= c->hs->deadline_ns)) {
			pf_handshake_expire(u->d, c->hs);
			c->hs = NULL;
		} else if (c->hs) {
			uring_hello(u, c);
		}
	} else if (c->s) {
		bool pidfd = what == UD_PIDFD;
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
	forget_if_done(u, c);
}

static void on_accept(struct ctl_uring *u)
{
	struct pf_handshake *h;
	while (pf_handshake_accept(u->d, &h) == 0) {
		struct ctl_client *c = h ? add_client(&u->clients, h) : NULL;
		if (!c)
			continue;
		uring_hello(u, c); /* the hello is usually there already */
		forget_if_done(u, c);
	}
}

/* Handshakes whose deadline passed: cancel their polls; the cancelled
 * poll's completion drops them (on_client_cqe). */
static void expire_hellos(struct ctl_uring *u)
{
	int64_t now = pf_daemon_now_ns();
	for (struct ctl_client *c = u->clients; c; c = c->next)
		if (c->hs && !c->cancelling && now >= c->hs->deadline_ns) {
			c->cancelling = true;
			cancel_ud(u, (uint64_t)(uintptr_t)c | UD_HELLO);
		}
}

/* Returns 0 when stopped normally, or a negative errno when io_uring failed
 * at setup (the caller then falls back to poll). */
static int control_uring(struct pf_daemon *d)
{
	struct ctl_uring u = { .d = d };
	/* cooperative task running: completions are processed when we enter
	 * the ring, not by interrupting whatever this thread is doing */
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
	/* the engine sets stop when it has drained, and handshakes have
	 * deadlines: look every 200 ms */
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
				on_client_cqe(&u, (struct ctl_client *)(uintptr_t)(ud & ~(uint64_t)UD_BITS),
					      (unsigned)(ud & UD_BITS), res);
			}
		}
		io_uring_cq_advance(&u.ring, seen);
		expire_hellos(&u);
	}
	/* tearing the ring down cancels every poll still armed */
	io_uring_queue_exit(&u.ring);
	while (u.clients) {
		struct ctl_client *c = u.clients;
		u.clients = c->next;
		pf_handshake_abandon(c->hs);
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
