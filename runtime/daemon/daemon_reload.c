/*
 * daemon_reload.c — SIGHUP: read the configuration again (config file, then
 * the command line's flags, which still win) and apply what can change
 * while serving.
 *
 * Reloadable: log level, per-client quotas (in flight, tokens, KV blocks),
 * allow lists, max clients, handshake/stall/drain/resume timeouts.  Everything else
 * (model, socket, KV pool, scheduler limits, ring sizes) is fixed at start;
 * a change to those is reported as needing a restart and ignored.
 *
 * Threads: the control thread parses and applies the fields only it reads
 * (log level, allow lists, max clients, handshake timeout); the fields the engine thread reads
 * go through the inbox (d->reload) and are applied there between steps, so
 * no field is written by one thread while the other reads it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/daemon/daemon.h"

static const char *level_name(int l)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	return l >= 0 && l < 4 ? names[l] : "?";
}

static void add(char *buf, size_t cap, const char *fmt, long long a, long long b, const char *name)
{
	size_t n = strlen(buf);
	if (n < cap)
		snprintf(buf + n, cap - n, fmt, n ? ", " : "", name, a, b);
}

void pf_daemon_reload(struct pf_daemon *d)
{
	struct pf_daemon_config *nc = malloc(sizeof(*nc));
	if (!nc) {
		pf_daemon_log(d, PF_LOG_ERROR, "SIGHUP: out of memory; configuration not reloaded");
		return;
	}
	int r = pf_daemon_config_parse(nc, d->argc, d->argv);
	if (r != 0) {
		pf_daemon_log(d, PF_LOG_ERROR, "SIGHUP: the configuration has errors (see above); keeping the running one");
		free(nc);
		return;
	}
	/* compare with what was last applied or handed to the engine (not with
	 * d->cfg, whose engine fields the engine thread writes) */
	const struct pf_daemon_config *oc = d->cfg_seen ? d->cfg_seen : &d->cfg;
	char changed[1024] = "", fixed[512] = "";
#define NUM(field, name) \
	if (nc->field != oc->field) \
		add(changed, sizeof(changed), "%s%s %lld -> %lld", (long long)oc->field, (long long)nc->field, name)
	NUM(max_inflight, "max-inflight");
	NUM(max_client_tokens, "max-tokens-per-client");
	NUM(max_client_blocks, "max-blocks-per-client");
	NUM(max_clients, "max-clients");
	NUM(handshake_timeout_ms, "handshake-timeout (ms)");
	NUM(stall_timeout_s, "stall-timeout");
	NUM(drain_timeout_s, "drain-timeout");
	NUM(resume_timeout_s, "resume-timeout");
#undef NUM
	if (nc->log_level != oc->log_level) {
		size_t n = strlen(changed);
		snprintf(changed + n, sizeof(changed) - n, "%slog-level %s -> %s", n ? ", " : "", level_name(oc->log_level),
			 level_name(nc->log_level));
	}
	if (nc->n_allow_uids != oc->n_allow_uids || nc->n_allow_gids != oc->n_allow_gids ||
	    memcmp(nc->allow_uids, oc->allow_uids, sizeof(nc->allow_uids)) ||
	    memcmp(nc->allow_gids, oc->allow_gids, sizeof(nc->allow_gids))) {
		size_t n = strlen(changed);
		snprintf(changed + n, sizeof(changed) - n, "%sallow lists (%d uids, %d gids)", n ? ", " : "",
			 nc->n_allow_uids, nc->n_allow_gids);
	}
#define FIXED(cond, name) \
	if (cond) { \
		size_t n = strlen(fixed); \
		snprintf(fixed + n, sizeof(fixed) - n, "%s%s", n ? ", " : "", name); \
	}
	FIXED(strcmp(nc->model, oc->model), "model");
	FIXED(strcmp(nc->socket_path, oc->socket_path) || strcmp(nc->instance, oc->instance), "socket");
	FIXED(nc->threads != oc->threads, "threads");
	FIXED(nc->swap_space != oc->swap_space || nc->preemption_mode != oc->preemption_mode, "swap");
	FIXED(nc->kv_memory != oc->kv_memory || nc->block_size != oc->block_size ||
		      nc->gpu_memory_utilization != oc->gpu_memory_utilization, "KV pool");
	FIXED(nc->device != oc->device, "device");
	FIXED(nc->max_model_len != oc->max_model_len || nc->max_num_seqs != oc->max_num_seqs ||
		      nc->max_batched_tokens != oc->max_batched_tokens || nc->prefix_caching != oc->prefix_caching ||
		      nc->priority_policy != oc->priority_policy || nc->static_batching != oc->static_batching,
	      "scheduler");
	FIXED(nc->sq_entries != oc->sq_entries || nc->cq_entries != oc->cq_entries ||
		      nc->payload_bytes != oc->payload_bytes || nc->socket_mode != oc->socket_mode,
	      "rings/socket mode");
	FIXED(strcmp(nc->state_file, oc->state_file), "state-file");
	/* read by both threads: fixed while serving */
	FIXED(nc->max_uid_clients != oc->max_uid_clients || nc->max_uid_tokens != oc->max_uid_tokens ||
		      nc->max_uid_blocks != oc->max_uid_blocks || nc->n_trusted != oc->n_trusted ||
		      memcmp(nc->trusted_uids, oc->trusted_uids, sizeof(nc->trusted_uids)) ||
		      memcmp(nc->trusted_factor, oc->trusted_factor, sizeof(nc->trusted_factor)),
	      "per-uid limits");
#undef FIXED
	if (fixed[0])
		pf_daemon_log(d, PF_LOG_WARN, "SIGHUP: %s changed but can only change with a restart; ignored", fixed);
	if (!changed[0]) {
		pf_daemon_log(d, PF_LOG_INFO, "SIGHUP: configuration reloaded; nothing that can change at run time changed");
		free(nc);
		return;
	}
	/* ours (control thread) now; the engine's fields at its next step */
	d->cfg.n_allow_uids = nc->n_allow_uids;
	d->cfg.n_allow_gids = nc->n_allow_gids;
	memcpy(d->cfg.allow_uids, nc->allow_uids, sizeof(nc->allow_uids));
	memcpy(d->cfg.allow_gids, nc->allow_gids, sizeof(nc->allow_gids));
	d->cfg.max_clients = nc->max_clients;
	__atomic_store_n(&d->cfg.handshake_timeout_ms, nc->handshake_timeout_ms, __ATOMIC_RELAXED);
	d->cfg.log_level = nc->log_level;
	atomic_store(&d->log_level, nc->log_level);
	if (d->cfg_seen)
		*d->cfg_seen = *nc;
	pthread_mutex_lock(&d->lock);
	free(d->reload);
	d->reload = nc;
	pthread_mutex_unlock(&d->lock);
	pf_daemon_log(d, PF_LOG_INFO, "SIGHUP: configuration reloaded: %s", changed);
}

void pf_daemon_apply_reload(struct pf_daemon *d, struct pf_daemon_config *nc)
{
	if (!nc)
		return;
	/* the control thread reads it for the welcome */
	__atomic_store_n(&d->cfg.max_inflight, nc->max_inflight, __ATOMIC_RELAXED);
	d->cfg.max_client_tokens = nc->max_client_tokens;
	d->cfg.max_client_blocks = nc->max_client_blocks;
	d->cfg.stall_timeout_s = nc->stall_timeout_s;
	d->cfg.drain_timeout_s = nc->drain_timeout_s;
	d->cfg.resume_timeout_s = nc->resume_timeout_s;
	free(nc);
}
