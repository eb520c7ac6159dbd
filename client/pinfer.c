/*
 * pinfer.c — libpinfer: registration handshake, segment mapping, the
 * connection's lifetime and getters.  See pinfer.h (API) and client_impl.h
 * (private state).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/client_impl.h"
#include "shm/path.h"
#include "shm/proto.h"
#include "shm/stats.h"

#define MAX_FDS 8 /* room to see (and close) more fds than the two we expect */

int pf_client_fail(struct pinfer *c, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return r;
}

const char *pinfer_last_error(const struct pinfer *c)
{
	return c ? c->err : "no connection to pinferd";
}

void pinfer_connect_opts_init(struct pinfer_connect_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = 10000;
}

/* ---- in-flight tag set ------------------------------------------------------------ */

static uint32_t tag_hash(uint64_t tag, uint32_t cap)
{
	/* Fibonacci hashing: tags are sequential, this spreads them */
	return (uint32_t)((tag * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

static int live_grow(struct pinfer *c)
{
	uint32_t cap = c->live_cap ? c->live_cap * 2 : 64;
	struct pf_live_slot *t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->live_cap; i++) {
		uint64_t tag = c->live[i].tag;
		if (!tag)
			continue;
		uint32_t j = tag_hash(tag, cap);
		while (t[j].tag)
			j = (j + 1) & (cap - 1);
		t[j] = c->live[i];
	}
	free(c->live);
	c->live = t;
	c->live_cap = cap;
	return 0;
}

int pf_client_live_add(struct pinfer *c, uint64_t tag)
{
	/* load <= 1/2 keeps probe sequences short */
	if ((c->n_live + 1) * 2 > c->live_cap) {
		int r = live_grow(c);
		if (r)
			return r;
	}
	uint32_t j = tag_hash(tag, c->live_cap);
	while (c->live[j].tag) {
		if (c->live[j].tag == tag)
			return 0;
		j = (j + 1) & (c->live_cap - 1);
	}
	memset(&c->live[j], 0, sizeof(c->live[j]));
	c->live[j].tag = tag;
	c->n_live++;
	return 0;
}

static int64_t live_find(const struct pinfer *c, uint64_t tag)
{
	if (!c->live_cap || !tag)
		return -1;
	uint32_t j = tag_hash(tag, c->live_cap);
	while (c->live[j].tag) {
		if (c->live[j].tag == tag)
			return j;
		j = (j + 1) & (c->live_cap - 1);
	}
	return -1;
}

bool pf_client_live_has(const struct pinfer *c, uint64_t tag)
{
	return live_find(c, tag) >= 0;
}

struct pf_live_slot *pf_client_live_get(struct pinfer *c, uint64_t tag)
{
	int64_t f = live_find(c, tag);
	return f < 0 ? NULL : &c->live[f];
}

bool pf_client_live_remove(struct pinfer *c, uint64_t tag)
{
	int64_t f = live_find(c, tag);
	if (f < 0)
		return false;
	uint32_t mask = c->live_cap - 1, i = (uint32_t)f, j = i;
	/* backward-shift deletion (no tombstones): pull later members of the
	 * probe run into the hole when their home slot does not lie in (i, j] */
	for (;;) {
		j = (j + 1) & mask;
		if (!c->live[j].tag)
			break;
		uint32_t home = tag_hash(c->live[j].tag, c->live_cap);
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (stays)
			continue;
		c->live[i] = c->live[j];
		i = j;
	}
	memset(&c->live[i], 0, sizeof(c->live[i]));
	c->n_live--;
	return true;
}

/* ---- liveness -------------------------------------------------------------------------- */

int pf_client_check_alive(struct pinfer *c)
{
	if (c->gone)
		return -ECONNRESET;
	/* acquire: pairs with the daemon's store of GONE, which it makes after
	 * its last completions, so those are visible to the caller's drain */
	uint32_t st = atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire);
	if (st == PF_DAEMON_GONE) {
		c->gone = true;
		return pf_client_fail(c, -ECONNRESET,
				      "pinferd at %s shut down; reconnect (pinfer_close + pinfer_connect) once it is back",
				      c->path);
	}
	struct pollfd p = { .fd = c->sock, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	bool dead = p.revents & (POLLHUP | POLLERR | POLLNVAL);
	if (!dead && (p.revents & POLLIN)) {
		/* the daemon never sends after the welcome; readable means EOF
		 * (or an error), which MSG_PEEK shows without consuming */
		char b;
		ssize_t n = recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		dead = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
	}
	if (!dead)
		return 0;
	c->gone = true;
	return pf_client_fail(c, -ECONNRESET,
			      "pinferd at %s went away (connection closed); reconnect (pinfer_close + pinfer_connect) "
			      "once it is back",
			      c->path);
}

/* ---- handshake -------------------------------------------------------------------------- */

/*
 * Why connect(2) to path failed (err: its -errno), in words a user can act
 * on; -ETIMEDOUT or err, the code to report.  Shared by clients and stats
 * readers (pinfer-top, pinfer-exporter), so every tool says the same.  A
 * command that would start pinferd is suggested only where that pinferd
 * could take the path: nothing there, or a stale socket (pinferd replaces
 * only sockets; a regular file at the path gets a refusal, not advice to
 * overwrite it).
 */
static int connect_advice(char *buf, size_t len, const char *path, int err, bool explicit_path,
			  const char *instance)
{
	struct stat st;
	if (err == -ENOENT || err == -ECONNREFUSED) {
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(buf, len, "%s is not pinferd's socket (it is not a socket at all); "
				 "name the socket pinferd listens on with --socket", path);
			return err;
		}
		snprintf(buf, len, "no pinferd at %s: start it with `pinferd --model MODEL.gguf%s%s`", path,
			 explicit_path ? " --socket " : instance ? " --instance " : "",
			 explicit_path ? path : instance ? instance : "");
		return err;
	}
	if (err == -EACCES || err == -EPERM) {
		snprintf(buf, len, "permission denied connecting to %s: pinferd's socket admits its owner and "
			 "group (see --socket-mode)", path);
		return err;
	}
	if (err == -EAGAIN || err == -ETIMEDOUT) {
		snprintf(buf, len, "pinferd at %s is not accepting connections (busy?)", path);
		return -ETIMEDOUT;
	}
	snprintf(buf, len, "connecting to %s: %s", path, strerror(-err));
	return err;
}

static int set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = { 0, 0 };
	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
	}
	/* SO_SNDTIMEO also bounds connect() on a unix socket whose backlog is full */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Read the welcome and collect every fd passed with it (any number, in any
 * segment of the stream), so the caller can close them all on error.
 * Returns 0, -ECONNRESET (EOF before a whole welcome), -ETIMEDOUT, -EPROTO
 * (truncated control data: fds were dropped by the kernel), -errno.
 */
static int recv_welcome(int fd, struct pf_welcome *w, int *fds, int *nfds, int *extra_fds)
{
	size_t got = 0;
	*nfds = 0;
	*extra_fds = 0;
	while (got < sizeof(*w)) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { .iov_base = (char *)w + got, .iov_len = sizeof(*w) - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				     .msg_controllen = sizeof(cbuf.buf) };
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;
				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (*nfds < MAX_FDS)
					fds[(*nfds)++] = f;
				else {
					close(f);
					(*extra_fds)++;
				}
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			return -EPROTO;
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

static bool pow2_in(uint32_t v, uint32_t max)
{
	return v >= 1 && v <= max && (v & (v - 1)) == 0;
}

static int welcome_status_errno(uint16_t st)
{
	switch (st) {
	case PF_WELCOME_VERSION:
		return -EPROTONOSUPPORT;
	case PF_WELCOME_DENIED:
		return -EACCES;
	case PF_WELCOME_FULL:
		return -EBUSY;
	case PF_WELCOME_DRAINING:
		return -ESHUTDOWN;
	case PF_WELCOME_INVALID:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static const char *welcome_status_str(uint16_t st)
{
	switch (st) {
	case PF_WELCOME_VERSION:
		return "protocol version mismatch";
	case PF_WELCOME_DENIED:
		return "access denied";
	case PF_WELCOME_FULL:
		return "too many clients";
	case PF_WELCOME_DRAINING:
		return "pinferd is shutting down";
	case PF_WELCOME_INVALID:
		return "pinferd rejected our hello as malformed";
	default:
		return "pinferd failed to register us";
	}
}

/* Check a segment fd: size as announced, and sealed against shrinking (so
 * the mapping can never SIGBUS us under a buggy peer). */
static int check_segment(struct pinfer *c, int fd, uint64_t want, const char *name)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return pf_client_fail(c, -errno, "fstat of the %s segment: %s", name, strerror(errno));
	if ((uint64_t)st.st_size != want)
		return pf_client_fail(c, -EPROTO, "pinferd's %s segment is %lld bytes, the welcome says %llu", name,
				      (long long)st.st_size, (unsigned long long)want);
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return pf_client_fail(c, -EPROTO, "pinferd's %s segment is not sealed against shrinking", name);
	return 0;
}

static int handshake(struct pinfer *c, const struct pinfer_connect_opts *o, int timeout_ms)
{
	struct pf_hello h = {
		.magic = PF_PROTO_MAGIC,
		.version = PF_PROTO_VERSION,
		.sizeof_sqe = sizeof(struct pf_sqe),
		.sizeof_cqe = sizeof(struct pf_cqe),
		.sizeof_c2d_hdr = sizeof(struct pf_c2d_hdr),
		.sizeof_d2c_hdr = sizeof(struct pf_d2c_hdr),
		.sq_entries = o->sq_entries,
		.cq_entries = o->cq_entries,
		.payload_bytes = o->payload_bytes,
	};
	struct pf_welcome w;
	int fds[MAX_FDS], nfds = 0, extra = 0, r;
	void *m;

	r = send_all(c->sock, &h, sizeof(h));
	if (r)
		return pf_client_fail(c, r, "sending hello to pinferd at %s: %s", c->path, strerror(-r));
	memset(&w, 0, sizeof(w));
	r = recv_welcome(c->sock, &w, fds, &nfds, &extra);
	if (r == -ECONNRESET)
		r = pf_client_fail(c, r, "pinferd at %s closed the connection during the handshake", c->path);
	else if (r == -ETIMEDOUT)
		r = pf_client_fail(c, r, "pinferd at %s did not answer within %d ms", c->path, timeout_ms);
	else if (r == -EPROTO)
		r = pf_client_fail(c, r, "pinferd at %s sent truncated control data", c->path);
	else if (r)
		r = pf_client_fail(c, r, "reading pinferd's welcome: %s", strerror(-r));
	if (r)
		goto out;
	w.model[sizeof(w.model) - 1] = 0;
	w.message[sizeof(w.message) - 1] = 0;
	if (w.magic != PF_PROTO_MAGIC) {
		r = pf_client_fail(c, -EPROTO, "%s does not speak the pinfer protocol (bad magic)", c->path);
		goto out;
	}
	if (w.status != PF_WELCOME_OK) {
		r = pf_client_fail(c, welcome_status_errno(w.status), "pinferd at %s: %s%s%s", c->path,
				   welcome_status_str(w.status), w.message[0] ? ": " : "", w.message);
		goto out;
	}
	if (w.version != PF_PROTO_VERSION) {
		r = pf_client_fail(c, -EPROTONOSUPPORT,
				   "pinferd at %s offered protocol version %u; this libpinfer speaks %u", c->path,
				   w.version, PF_PROTO_VERSION);
		goto out;
	}
	/* v2: c2d, d2c and the wake eventfd */
	if (nfds + extra != 3) {
		r = pf_client_fail(c, -EPROTO, "pinferd sent %d file descriptors with its welcome, expected 3",
				   nfds + extra);
		goto out;
	}
	if (!pow2_in(w.sq_entries, PF_SQ_MAX) || !pow2_in(w.cq_entries, PF_CQ_MAX) || w.payload_bytes == 0 ||
	    w.payload_bytes > PF_PAYLOAD_MAX || w.c2d_bytes != pf_c2d_bytes(w.sq_entries, w.payload_bytes) ||
	    w.d2c_bytes != pf_d2c_bytes(w.cq_entries)) {
		r = pf_client_fail(c, -EPROTO, "pinferd's welcome has inconsistent ring sizes (sq %u, cq %u, payload %u)",
				   w.sq_entries, w.cq_entries, w.payload_bytes);
		goto out;
	}
	if ((r = check_segment(c, fds[0], w.c2d_bytes, "c2d")) || (r = check_segment(c, fds[1], w.d2c_bytes, "d2c")))
		goto out;

	c->c2d_bytes = w.c2d_bytes;
	c->d2c_bytes = w.d2c_bytes;
	m = mmap(NULL, c->c2d_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (m == MAP_FAILED) {
		r = pf_client_fail(c, -errno, "mapping the c2d segment: %s", strerror(errno));
		goto out;
	}
	c->c2d = m;
	/* read-only: the daemon sealed it F_SEAL_FUTURE_WRITE, and we only load */
	m = mmap(NULL, c->d2c_bytes, PROT_READ, MAP_SHARED, fds[1], 0);
	if (m == MAP_FAILED) {
		r = pf_client_fail(c, -errno, "mapping the d2c segment: %s", strerror(errno));
		goto out;
	}
	c->d2c = m;
	if (c->c2d->magic != PF_PROTO_MAGIC || c->d2c->magic != PF_PROTO_MAGIC || c->d2c->version != w.version ||
	    c->d2c->sq_entries != w.sq_entries || c->d2c->cq_entries != w.cq_entries ||
	    c->d2c->payload_bytes != w.payload_bytes) {
		r = pf_client_fail(c, -EPROTO, "pinferd's segment headers disagree with its welcome");
		goto out;
	}
	c->sq_n = w.sq_entries;
	c->cq_n = w.cq_entries;
	c->payload_n = w.payload_bytes;
	c->sq = (struct pf_sqe *)(c->c2d + 1);
	c->payload = (uint8_t *)(c->sq + c->sq_n);
	c->cq = (const struct pf_cqe *)(c->d2c + 1);
	/* start where the daemon initialised the indices (0 today) */
	c->sq_tail = atomic_load_explicit(&c->c2d->sq_tail, memory_order_relaxed);
	c->sq_head_seen = c->sq_tail;
	c->cq_head = atomic_load_explicit(&c->c2d->cq_head, memory_order_relaxed);
	c->slot_end = calloc(c->sq_n, sizeof(*c->slot_end));
	if (!c->slot_end) {
		r = pf_client_fail(c, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(c->model, w.model, sizeof(c->model));
	c->n_vocab = w.n_vocab;
	c->max_model_len = w.max_model_len;
	c->bos = w.bos;
	c->eos = w.eos;
	c->max_inflight = w.max_inflight;
	c->client_id = w.client_id;
	c->efd = fds[2];
	fds[2] = -1;
	pf_client_pick_wait(c);
	r = 0;
out:
	/* the mappings keep the segments alive; the fds are not needed */
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}

int pinfer_connect(const struct pinfer_connect_opts *opts, struct pinfer **ret)
{
	struct pinfer_connect_opts def;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pinfer *c;
	int r, timeout_ms;

	*ret = NULL;
	if (!opts) {
		pinfer_connect_opts_init(&def);
		opts = &def;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		if (opts->err && opts->err_len)
			snprintf(opts->err, opts->err_len, "out of memory");
		return -ENOMEM;
	}
	c->sock = c->efd = -1;
	c->evcap = 256;
	c->evbuf = malloc(c->evcap);
	if (!c->evbuf) {
		r = pf_client_fail(c, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((opts->sq_entries && !pow2_in(opts->sq_entries, PF_SQ_MAX)) ||
	    (opts->cq_entries && !pow2_in(opts->cq_entries, PF_CQ_MAX)) || opts->payload_bytes > PF_PAYLOAD_MAX) {
		r = pf_client_fail(c, -EINVAL,
				   "ring sizes must be powers of two (sq <= %d, cq <= %d) and payload <= %u bytes",
				   PF_SQ_MAX, PF_CQ_MAX, PF_PAYLOAD_MAX);
		goto fail;
	}
	r = pf_shm_socket_path(opts->socket_path, opts->instance, c->path, sizeof(c->path));
	if (r) {
		r = pf_client_fail(c, r, r == -EINVAL ? "bad instance name \"%s\": use 1..64 of [A-Za-z0-9._-]"
						      : "socket path too long (instance \"%s\")",
				   opts->instance ? opts->instance : "");
		goto fail;
	}
	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		r = pf_client_fail(c, -errno, "socket: %s", strerror(errno));
		goto fail;
	}
	timeout_ms = opts->timeout_ms ? opts->timeout_ms : 10000;
	c->timeout_ms = timeout_ms;
	r = set_timeouts(c->sock, timeout_ms);
	if (r) {
		r = pf_client_fail(c, r, "setsockopt: %s", strerror(-r));
		goto fail;
	}
	while ((r = connect(c->sock, (struct sockaddr *)&sa, sizeof(sa))) < 0 && errno == EINTR)
		;
	if (r < 0) {
		/* suggest the command line that would create this very socket */
		char why[512];
		r = connect_advice(why, sizeof(why), c->path, -errno, opts->socket_path && *opts->socket_path,
				   opts->instance);
		r = pf_client_fail(c, r, "%s", why);
		goto fail;
	}
	r = handshake(c, opts, timeout_ms);
	if (r)
		goto fail;
	c->err[0] = 0;
	*ret = c;
	return 0;
fail:
	if (opts->err && opts->err_len)
		snprintf(opts->err, opts->err_len, "%s", c->err);
	pinfer_close(c);
	return r;
}

void pinfer_close(struct pinfer *c)
{
	if (!c)
		return;
	if (c->c2d)
		munmap(c->c2d, c->c2d_bytes);
	if (c->d2c)
		munmap(c->d2c, c->d2c_bytes);
	if (c->sock >= 0)
		close(c->sock);
	if (c->efd >= 0)
		close(c->efd);
	pf_client_ring_free(c);
	for (uint32_t i = 0; i < c->n_partials; i++)
		free(c->partials[i].buf);
	free(c->partials);
	free(c->slot_end);
	free(c->live);
	free(c->evbuf);
	free(c);
}

/* ---- reconnecting ---------------------------------------------------------------------- */

void pf_client_resume_backlog(struct pinfer *c)
{
	for (uint32_t i = 0; i < c->live_cap && c->resume_backlog; i++) {
		struct pf_live_slot *sl = &c->live[i];
		if (!sl->tag || !sl->suspended)
			continue;
		if (pf_client_submit_resume(c, sl))
			return; /* still full: next time */
		sl->suspended = false;
		c->resume_backlog--;
	}
}

uint32_t pinfer_suspended(const struct pinfer *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->live_cap; i++)
		n += c->live[i].tag && c->live[i].suspended;
	return n;
}

int pinfer_reconnect(struct pinfer *c)
{
	if (!c->gone)
		return pf_client_fail(c, -EISCONN, "pinferd at %s is still connected", c->path);
	struct pinfer_connect_opts o;
	char err[256];
	pinfer_connect_opts_init(&o);
	o.socket_path = c->path;
	o.timeout_ms = c->timeout_ms;
	o.sq_entries = c->sq_n;
	o.cq_entries = c->cq_n;
	o.payload_bytes = c->payload_n;
	o.err = err;
	o.err_len = sizeof(err);
	/* allocated first, so that nothing can fail after the swap below */
	uint64_t *drop = calloc(c->live_cap ? c->live_cap : 1, sizeof(*drop));
	if (!drop)
		return pf_client_fail(c, -ENOMEM, "out of memory");
	struct pinfer *n;
	int r = pinfer_connect(&o, &n);
	if (r) {
		free(drop);
		return pf_client_fail(c, r, "%s", err);
	}
	/* the new connection's segments, socket and sleeping state replace the
	 * old ones; the requests in flight (c->live) and tags stay */
	struct pinfer old = *c;
	c->sock = n->sock;
	c->efd = n->efd;
	c->c2d = n->c2d;
	c->d2c = n->d2c;
	c->c2d_bytes = n->c2d_bytes;
	c->d2c_bytes = n->d2c_bytes;
	c->sq = n->sq;
	c->payload = n->payload;
	c->cq = n->cq;
	c->sq_n = n->sq_n;
	c->cq_n = n->cq_n;
	c->payload_n = n->payload_n;
	c->sq_tail = n->sq_tail;
	c->sq_head_seen = n->sq_head_seen;
	c->cq_head = n->cq_head;
	c->pay_head = n->pay_head;
	c->pay_tail = n->pay_tail;
	c->slot_end = n->slot_end;
	c->wait_how = n->wait_how;
	c->ring = n->ring;
	c->gone = false;
	c->next_check_ns = 0;
	memcpy(c->model, n->model, sizeof(c->model));
	c->n_vocab = n->n_vocab;
	c->max_model_len = n->max_model_len;
	c->bos = n->bos;
	c->eos = n->eos;
	c->max_inflight = n->max_inflight;
	c->client_id = n->client_id;
	/* the shell of n and the old connection's resources go */
	n->c2d = NULL;
	n->d2c = NULL;
	n->sock = n->efd = -1;
	n->slot_end = NULL;
	n->ring = NULL;
	pinfer_close(n);
	if (old.c2d)
		munmap(old.c2d, old.c2d_bytes);
	if (old.d2c)
		munmap(old.d2c, old.d2c_bytes);
	if (old.sock >= 0)
		close(old.sock);
	if (old.efd >= 0)
		close(old.efd);
	free(old.slot_end);
	if (old.ring) {
		struct pinfer tmp = { .ring = old.ring };
		pf_client_ring_free(&tmp);
	}
	for (uint32_t i = 0; i < c->n_partials; i++)
		free(c->partials[i].buf);
	c->n_partials = 0;
	/* reattach what was suspended; forget what was lost with the old
	 * daemon (removal reshuffles the table: collect first, remove after).
	 * Suspended requests that do not fit the submission ring now stay
	 * suspended and are sent as it drains (pf_client_resume_backlog). */
	int resumed = 0;
	uint32_t n_drop = 0;
	c->resume_backlog = 0;
	for (uint32_t i = 0; i < c->live_cap; i++) {
		struct pf_live_slot *sl = &c->live[i];
		if (!sl->tag)
			continue;
		if (!sl->suspended)
			drop[n_drop++] = sl->tag;
		else if (pf_client_submit_resume(c, sl) == 0) {
			sl->suspended = false;
			resumed++;
		} else {
			c->resume_backlog++;
		}
	}
	for (uint32_t i = 0; i < n_drop; i++)
		pf_client_live_remove(c, drop[i]);
	free(drop);
	return resumed;
}

/* ---- getters ------------------------------------------------------------------------- */

const char *pinfer_model_name(const struct pinfer *c)
{
	return c->model;
}

int32_t pinfer_n_vocab(const struct pinfer *c)
{
	return c->n_vocab;
}

int32_t pinfer_max_model_len(const struct pinfer *c)
{
	return c->max_model_len;
}

int32_t pinfer_bos(const struct pinfer *c)
{
	return c->bos;
}

int32_t pinfer_eos(const struct pinfer *c)
{
	return c->eos;
}

uint32_t pinfer_max_inflight(const struct pinfer *c)
{
	return c->max_inflight;
}

const char *pinfer_socket_path(const struct pinfer *c)
{
	return c->path;
}

uint32_t pinfer_inflight(const struct pinfer *c)
{
	return c->n_live;
}

int pinfer_fd(const struct pinfer *c)
{
	return c->sock;
}

const char *pinfer_finish_reason_str(enum pinfer_finish_reason r)
{
	switch (r) {
	case PINFER_FINISH_STOP:
		return "stop";
	case PINFER_FINISH_LENGTH:
		return "length";
	case PINFER_FINISH_CANCELLED:
		return "cancelled";
	case PINFER_FINISH_ERROR:
		return "error";
	case PINFER_FINISH_DEADLINE:
		return "deadline";
	case PINFER_FINISH_STALLED:
		return "stalled";
	}
	return "unknown";
}

/* ---- statistics reader ------------------------------------------------------------------- */

int pinfer_stats_open(const struct pinfer_connect_opts *opts)
{
	struct pinfer_connect_opts def;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[sizeof(sa.sun_path)];
	struct pf_welcome w;
	int fds[MAX_FDS], nfds = 0, extra = 0, r, fd = -1;

	if (!opts) {
		pinfer_connect_opts_init(&def);
		opts = &def;
	}
#define STATS_FAIL(code, ...) do { r = (code); if (opts->err && opts->err_len) snprintf(opts->err, opts->err_len, __VA_ARGS__); goto out; } while (0)
	r = pf_shm_socket_path(opts->socket_path, opts->instance, path, sizeof(path));
	if (r)
		STATS_FAIL(r, "bad socket path or instance name");
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		STATS_FAIL(-errno, "socket: %s", strerror(errno));
	set_timeouts(fd, opts->timeout_ms ? opts->timeout_ms : 10000);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		char why[512];
		r = connect_advice(why, sizeof(why), path, -errno, opts->socket_path && *opts->socket_path,
				   opts->instance);
		STATS_FAIL(r, "%s", why);
	}
	struct pf_hello h = {
		.magic = PF_PROTO_MAGIC, .version = PF_PROTO_VERSION, .flags = PF_HELLO_STATS_ONLY,
		.sizeof_sqe = sizeof(struct pf_sqe), .sizeof_cqe = sizeof(struct pf_cqe),
		.sizeof_c2d_hdr = sizeof(struct pf_c2d_hdr), .sizeof_d2c_hdr = sizeof(struct pf_d2c_hdr),
	};
	r = send_all(fd, &h, sizeof(h));
	if (r)
		STATS_FAIL(r, "cannot send the hello to %s", path);
	r = recv_welcome(fd, &w, fds, &nfds, &extra);
	if (r)
		STATS_FAIL(r, "no welcome from pinferd at %s", path);
	if (w.magic != PF_PROTO_MAGIC || w.status != PF_WELCOME_OK) {
		w.message[sizeof(w.message) - 1] = '\0';
		STATS_FAIL(-EACCES, "pinferd refused: %s", w.message);
	}
	if (nfds != 1 || extra || w.c2d_bytes != sizeof(struct pf_stats))
		STATS_FAIL(-EPROTO, "pinferd sent a stats segment this pinfer does not understand (update the tools)");
	r = fds[0];
	nfds = 0;
out:
#undef STATS_FAIL
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (fd >= 0)
		close(fd);
	return r;
}
