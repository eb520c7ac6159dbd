/*
 * daemon_persist.c — requests that outlive pinferd: saved on drain, restored
 * at start, reattached by their clients.  Engine thread only.
 *
 *   drain timeout ──► export unfinished sequences ──► state file (atomic)
 *        │                                          └─► SUSPENDED{token} to each client
 *   start ──► read state file ──► parked (by resume token) ──► file removed
 *   client RESUME{token, tokens it has} ──► uid check ──► pf_engine_resume
 *        ──► the engine replays earlier tokens; those the client has are skipped
 *   parked and unclaimed for --resume-timeout ──► dropped (logged)
 *
 * Restored requests wait for their clients instead of running at once: a
 * request that ran ahead without its reader would have to buffer its output,
 * and a client that never returns would cost KV blocks for nothing.  The
 * file is removed once loaded, so a crash after a restart does not replay
 * requests twice (after a crash clients resubmit); requests still parked at
 * the next drain are written again.  Only protocol v2 clients can resume
 * (they understand SUSPENDED); v1 clients' requests are cancelled as before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/daemon/daemon.h"
#include "runtime/daemon/statefile.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --state-file, or where systemd's StateDirectory= / the user's state
 * folder puts it, one file per --instance. */
static void resolve_path(struct pf_daemon *d)
{
	const char *cfg = d->cfg.state_file;
	char dir[4096] = "";
	d->state_path[0] = '\0';
	if (!strcmp(cfg, "none"))
		return;
	if (cfg[0]) {
		snprintf(d->state_path, sizeof(d->state_path), "%s", cfg);
		return;
	}
	const char *sd = getenv("STATE_DIRECTORY"), *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	if (sd && *sd)
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(sd, ":"), sd); /* the first of several */
	else if (geteuid() == 0)
		snprintf(dir, sizeof(dir), "/var/lib/pinfer");
	else if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/pinfer", xdg);
	else if (home && *home)
		snprintf(dir, sizeof(dir), "%s/.local/state/pinfer", home);
	else
		return;
	if (d->cfg.instance[0])
		snprintf(d->state_path, sizeof(d->state_path), "%.4000s/pinferd-%s.state", dir, d->cfg.instance);
	else if (d->cfg.socket_path[0])
		/* daemons told apart only by --socket must not share one file */
		snprintf(d->state_path, sizeof(d->state_path), "%.4000s/pinferd-%016llx.state", dir,
			 (unsigned long long)XXH3_64bits(d->cfg.socket_path, strlen(d->cfg.socket_path)));
	else
		snprintf(d->state_path, sizeof(d->state_path), "%.4000s/pinferd.state", dir);
}

static void mkdirs_for(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0700);
			*p = '/';
		}
	mkdir(dir, 0700);
}

static bool same_token(const uint8_t *a, const uint8_t *b)
{
	/* constant time: tokens are secrets */
	uint8_t x = 0;
	for (int i = 0; i < 16; i++)
		x |= a[i] ^ b[i];
	return x == 0;
}

void pf_daemon_state_load(struct pf_daemon *d)
{
	struct pf_state_record *recs = NULL;
	size_t n = 0;
	char err[1024] = "";
	resolve_path(d);
	if (!d->state_path[0] || !d->engine)
		return;
	int r = pf_state_read(d->state_path, pf_engine_model_fingerprint(d->engine), &recs, &n, err, sizeof(err));
	if (r == -ENOENT)
		return;
	if (r) {
		char moved[4200];
		int q = pf_state_quarantine(d->state_path, moved, sizeof(moved));
		if (q == 0)
			pf_daemon_log(d, PF_LOG_ERROR, "%s; moved it to %s and starting without the saved requests", err, moved);
		else
			pf_daemon_log(d, PF_LOG_ERROR, "%s; could not move it aside (%s); starting without the saved requests",
				      err, strerror(-q));
		return;
	}
	int n_req = 0, dropped = 0;
	int64_t expires = now_ns() + (int64_t)d->cfg.resume_timeout_s * 1000000000;
	for (size_t i = 0; i < n; i++) {
		struct pf_parked *p = d->parked;
		while (p && !same_token(p->token, recs[i].resume_token))
			p = p->next;
		if (p && (p->uid != recs[i].uid || p->n_seqs == PF_RESUME_MAX_SEQS)) {
			dropped++;
			continue;
		}
		if (!p) {
			p = calloc(1, sizeof(*p));
			if (!p) {
				dropped++;
				continue;
			}
			p->uid = recs[i].uid;
			memcpy(p->token, recs[i].resume_token, 16);
			p->expires_ns = expires;
			p->next = d->parked;
			d->parked = p;
			n_req++;
		}
		p->seqs[p->n_seqs++] = recs[i].seq;
	}
	d->state_recs = recs;
	r = pf_state_remove(d->state_path);
	pf_daemon_log(d, PF_LOG_INFO, "restored %d requests (%zu sequences) from %s; they resume when their clients reattach (within %d s)%s",
		      n_req, n - (size_t)dropped, d->state_path, d->cfg.resume_timeout_s,
		      r ? "; could not remove the file" : "");
	if (dropped)
		pf_daemon_log(d, PF_LOG_WARN, "%d saved sequences were inconsistent (uid or count) and were dropped", dropped);
}

int pf_daemon_state_save(struct pf_daemon *d)
{
	struct pf_engine_snapshot *snaps = NULL;
	struct pf_state_record *recs = NULL;
	char err[1024] = "";
	int n_parked = 0, n_parked_req = 0, n = 0, n_req = 0, r;
	if (!d->state_path[0] || !d->engine)
		return -ENOTSUP;
	int ns = pf_engine_export(d->engine, &snaps);
	if (ns < 0)
		return ns;
	for (struct pf_parked *p = d->parked; p; p = p->next) {
		n_parked += p->n_seqs;
		n_parked_req++;
	}
	if (ns + n_parked == 0) {
		free(snaps);
		pf_state_remove(d->state_path);
		return 0;
	}
	recs = calloc((size_t)(ns + n_parked), sizeof(*recs));
	if (!recs) {
		free(snaps);
		return -ENOMEM;
	}
	for (int i = 0; i < ns; i++) {
		struct pf_dreq *q = snaps[i].user;
		struct pf_session *s = q->s;
		if (atomic_load(&s->dead) || s->version < 2)
			continue; /* cannot resume: cancelled by the caller */
		if (!q->has_token) {
			if (getrandom(q->resume_token, sizeof(q->resume_token), 0) != sizeof(q->resume_token)) {
				r = -EIO;
				goto out;
			}
			q->has_token = true;
		}
		recs[n] = (struct pf_state_record){ .uid = s->uid, .tag = q->tag, .seq = snaps[i] };
		memcpy(recs[n].resume_token, q->resume_token, 16);
		n++;
	}
	for (struct pf_parked *p = d->parked; p; p = p->next)
		for (int k = 0; k < p->n_seqs; k++) {
			recs[n] = (struct pf_state_record){ .uid = p->uid, .seq = p->seqs[k] };
			memcpy(recs[n].resume_token, p->token, 16);
			n++;
		}
	if (n == 0) {
		pf_state_remove(d->state_path);
		r = 0;
		goto out;
	}
	mkdirs_for(d->state_path);
	r = pf_state_write(d->state_path, recs, (size_t)n, pf_engine_model_fingerprint(d->engine), err, sizeof(err));
	if (r) {
		pf_daemon_log(d, PF_LOG_ERROR, "could not save unfinished requests: %s", err);
		goto out;
	}
	/* saved: tell each client how to come back; nothing more is posted
	 * for those requests */
	for (int i = 0; i < ns; i++) {
		struct pf_dreq *q = snaps[i].user;
		if (!q->has_token || q->suspended)
			continue;
		q->suspended = true;
		n_req++;
		struct pf_cqe e = { .kind = PF_CQ_SUSPENDED, .tag = q->tag };
		memcpy(e.u.sus.token, q->resume_token, 16);
		pf_session_post(q->s, &e);
	}
	for (struct pf_session *s = d->sessions; s; s = s->next) {
		pf_session_flush(s);
		pf_session_wake(s);
	}
	pf_waker_flush(&d->waker);
	pf_daemon_log(d, PF_LOG_INFO, "saved %d unfinished requests (%d sequences; %d of them restored earlier and not yet reclaimed) to %s",
		      n_req + n_parked_req, n, n_parked_req, d->state_path);
	r = n;
out:
	free(recs);
	free(snaps);
	return r;
}

void pf_daemon_resume(struct pf_session *s, const struct pf_sqe *e)
{
	struct pf_daemon *d = s->d;
	struct pf_resume_payload pl;
	char err[256] = "";
	if (!d->engine) {
		pf_session_post_error(s, e->tag, ENOENT, "nothing to resume: this pinferd has no model");
		return;
	}
	if (e->payload_len != sizeof(pl) || (uint64_t)e->payload_off + sizeof(pl) > s->payload_n) {
		s->bad_entries++;
		pf_session_post_error(s, e->tag, EINVAL, "RESUME payload has the wrong size or lies outside the payload area");
		return;
	}
	/* one copy out of shared memory; only the copy is looked at */
	memcpy(&pl, s->payload + e->payload_off, sizeof(pl));
	struct pf_parked **pp = &d->parked;
	while (*pp && !same_token((*pp)->token, pl.token))
		pp = &(*pp)->next;
	struct pf_parked *p = *pp;
	if (!p) {
		pf_session_post_error(s, e->tag, ENOENT,
				      "unknown resume token: already resumed, expired, or the daemon lost its state file");
		return;
	}
	if (p->uid != s->uid) {
		pf_session_post_error(s, e->tag, EACCES, "that saved request belongs to another user");
		return;
	}
	if (s->n_inflight >= d->cfg.max_inflight) {
		snprintf(err, sizeof(err), "too many requests in flight (limit %d per client)", d->cfg.max_inflight);
		pf_session_post_error(s, e->tag, EBUSY, err);
		return;
	}
	int64_t q_tokens, q_blocks;
	if (pf_session_check_quota(s, p->seqs[0].n_prompt, &p->seqs[0].params, &q_tokens, &q_blocks, err, sizeof(err))) {
		pf_session_post_error(s, e->tag, EDQUOT, err);
		return;
	}
	struct pf_dreq *q = calloc(1, sizeof(*q));
	if (!q) {
		pf_session_post_error(s, e->tag, ENOMEM, "out of memory");
		return;
	}
	q->s = s;
	q->tag = e->tag;
	q->n_prompt = p->seqs[0].n_prompt;
	for (uint32_t i = 0; i < pl.n_seqs && i < PF_RESUME_MAX_SEQS; i++)
		q->skip[i] = pl.received[i];
	int32_t had = 0;
	for (int k = 0; k < p->n_seqs; k++)
		had += p->seqs[k].n_generated;
	int r = pf_engine_resume(d->engine, p->seqs, p->n_seqs, q, &q->engine_id, err, sizeof(err));
	if (r) {
		free(q);
		pf_session_post_error(s, e->tag, -r, err[0] ? err : strerror(-r));
		if (r == -EINVAL) {
			/* it can never resume: do not keep it */
			pf_daemon_log(d, PF_LOG_WARN, "a saved request could not be resumed and was dropped: %s", err);
			*pp = p->next;
			free(p);
		}
		return;
	}
	pf_session_charge(s, q, q_tokens, q_blocks);
	pf_session_add_req(s, q);
	if (s->paused)
		pf_engine_pause(d->engine, q->engine_id, true);
	pf_daemon_log(d, PF_LOG_INFO, "client %llu (pid %d) resumed a saved request: %d sequences, %d tokens generated before",
		      (unsigned long long)s->id, s->pid, p->n_seqs, had);
	*pp = p->next;
	free(p);
}

void pf_daemon_parked_expire(struct pf_daemon *d, int64_t now)
{
	for (struct pf_parked **pp = &d->parked; *pp;) {
		struct pf_parked *p = *pp;
		if (now < p->expires_ns) {
			pp = &p->next;
			continue;
		}
		pf_daemon_log(d, PF_LOG_WARN, "a saved request of uid %u was not reclaimed within %d s and was dropped", p->uid,
			      d->cfg.resume_timeout_s);
		*pp = p->next;
		free(p);
	}
}

void pf_daemon_parked_free(struct pf_daemon *d)
{
	while (d->parked) {
		struct pf_parked *p = d->parked;
		d->parked = p->next;
		free(p);
	}
	pf_state_records_free(d->state_recs);
	d->state_recs = NULL;
}
