/*
 * daemon_config.c — pinferd's options: built-in defaults, then the config
 * file, then command-line flags.  Every option is both a flag (--name value)
 * and a config-file line (name = value), handled by the same code; the
 * files' syntax and the drop-in directory are conf.h's.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/daemon/conf.h"
#include "runtime/daemon/daemon.h"
#include "runtime/engine/device.h"

#define DEFAULT_CONFIG "/etc/pinfer/pinferd.conf"

enum {
	O_MODEL = 1, O_CONFIG, O_SOCKET, O_INSTANCE, O_THREADS, O_KV, O_BS, O_MML, O_SEQS, O_TOKENS, O_NOPREFIX,
	O_POLICY, O_CLIENTS, O_INFLIGHT, O_STALL, O_LOG, O_UID, O_GID, O_MODE, O_SQ, O_CQ, O_PAYLOAD, O_HELP,
	O_VERSION, O_ECHO, O_DRAIN, O_QTOKENS, O_QBLOCKS, O_STATE, O_RESUME_TO, O_DEVICE, O_GPU_UTIL,
};

/* Batching mode: ids of their own, clear of the list above and of getopt's '?'/':'. */
enum { O_BATCHING = 200, O_STATIC_BATCH, O_SWAP, O_PREEMPT, O_HANDSHAKE, O_UID_CLIENTS, O_UID_TOKENS, O_UID_BLOCKS,
       O_TRUSTED, O_STEP_MS };

static const struct option opts[] = {
	{ "model", required_argument, NULL, O_MODEL },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "socket", required_argument, NULL, O_SOCKET },
	{ "instance", required_argument, NULL, O_INSTANCE },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "kv-memory", required_argument, NULL, O_KV },
	{ "device", required_argument, NULL, O_DEVICE },
	{ "gpu-memory-utilization", required_argument, NULL, O_GPU_UTIL },
	{ "block-size", required_argument, NULL, O_BS },
	{ "max-model-len", required_argument, NULL, O_MML },
	{ "max-num-seqs", required_argument, NULL, O_SEQS },
	{ "max-num-batched-tokens", required_argument, NULL, O_TOKENS },
	{ "max-step-ms", required_argument, NULL, O_STEP_MS },
	{ "no-prefix-caching", no_argument, NULL, O_NOPREFIX },
	{ "policy", required_argument, NULL, O_POLICY },
	{ "max-clients", required_argument, NULL, O_CLIENTS },
	{ "max-inflight", required_argument, NULL, O_INFLIGHT },
	{ "max-tokens-per-client", required_argument, NULL, O_QTOKENS },
	{ "max-blocks-per-client", required_argument, NULL, O_QBLOCKS },
	{ "max-clients-per-uid", required_argument, NULL, O_UID_CLIENTS },
	{ "max-tokens-per-uid", required_argument, NULL, O_UID_TOKENS },
	{ "max-blocks-per-uid", required_argument, NULL, O_UID_BLOCKS },
	{ "trusted-uid", required_argument, NULL, O_TRUSTED },
	{ "stall-timeout", required_argument, NULL, O_STALL },
	{ "handshake-timeout", required_argument, NULL, O_HANDSHAKE },
	{ "log-level", required_argument, NULL, O_LOG },
	{ "allow-uid", required_argument, NULL, O_UID },
	{ "allow-gid", required_argument, NULL, O_GID },
	{ "socket-mode", required_argument, NULL, O_MODE },
	{ "sq-entries", required_argument, NULL, O_SQ },
	{ "cq-entries", required_argument, NULL, O_CQ },
	{ "payload-bytes", required_argument, NULL, O_PAYLOAD },
	{ "help", no_argument, NULL, O_HELP },
	{ "version", no_argument, NULL, O_VERSION },
	{ "echo-backend", no_argument, NULL, O_ECHO },
	{ "drain-timeout", required_argument, NULL, O_DRAIN },
	{ "state-file", required_argument, NULL, O_STATE },
	{ "resume-timeout", required_argument, NULL, O_RESUME_TO },
	{ "batching", required_argument, NULL, O_BATCHING },
	{ "static-batch", required_argument, NULL, O_STATIC_BATCH },
	{ "swap-space", required_argument, NULL, O_SWAP },
	{ "preemption-mode", required_argument, NULL, O_PREEMPT },
	{ 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinferd --model PATH [options]\n"
		"\n"
		"The pinfer runtime daemon: owns the model, the KV-cache block pool and the\n"
		"compute; local clients (libpinfer, the pinfer CLI) submit requests through\n"
		"shared-memory rings after registering on a unix socket.\n"
		"\n"
		"Every option may also be set in the config file as `name = value`, and in\n"
		"drop-in files FILE.d/*.conf read after it in name order (flags win over\n"
		"the files).  `#` starts a comment at the start of a line or after a blank;\n"
		"a value may be double-quoted (escapes \\\" \\\\ \\n \\t).\n"
		"\n"
		"  --model PATH                  GGUF model file (required)\n"
		"  --config FILE                 config file (default " DEFAULT_CONFIG ", skipped if absent),\n"
		"                                then FILE.d/*.conf\n"
		"  --socket PATH                 registration socket (default: $RUNTIME_DIRECTORY/pinferd.sock,\n"
		"                                /run/pinfer/pinferd.sock as root, else $XDG_RUNTIME_DIR/pinfer/)\n"
		"  --instance NAME               run a named instance: pinferd-NAME.sock (default: none)\n"
		"  --threads N                   CPU threads (default 0: every CPU this process may use)\n"
		"  --device DEV                  cpu, cuda, cuda:N or auto: the first GPU that works, else\n"
		"                                the CPU; the choice is logged (default auto)\n"
		"  --kv-memory SIZE              KV cache pool, e.g. 512M, 4G (default: 512M on the CPU; on a\n"
		"                                GPU what --gpu-memory-utilization leaves after the weights)\n"
		"  --gpu-memory-utilization F    share of the GPU's memory pinferd may use (default 0.90)\n"
		"  --swap-space SIZE             host memory for KV blocks of preempted sequences, e.g. 4G, or 0\n"
		"                                (default: 4G with a GPU, 0 on the CPU)\n"
		"  --preemption-mode MODE        when the KV pool runs out: recompute (free the victim's blocks,\n"
		"                                recompute them later), swap (copy them to swap space and back),\n"
		"                                or auto: swap victims with >= 256 computed tokens while swap\n"
		"                                space lasts, recompute the rest (default auto)\n"
		"  --block-size N                KV block size: 8, 16 or 32 tokens (default 16)\n"
		"  --max-model-len N             context limit per request (default: the model's, capped by the pool)\n"
		"  --max-num-seqs N              running sequences per step (default 256)\n"
		"  --max-num-batched-tokens N    token budget per step (default 2048)\n"
		"  --max-step-ms N               keep steps near N ms: prompt tokens per step follow\n"
		"                                their measured cost, decodes are never held back\n"
		"                                (default 0: off)\n"
		"  --no-prefix-caching           do not reuse cached prompt prefixes\n"
		"  --policy fcfs|priority        scheduling policy (default fcfs)\n"
		"  --batching continuous|static  continuous (iteration-level) batching, or the static\n"
		"                                baseline kept for measurements: batches of --static-batch\n"
		"                                requests run to completion, each reserving KV for its whole\n"
		"                                prompt + max_tokens (default continuous)\n"
		"  --static-batch N              requests per static batch (default 8)\n"
		"  --max-clients N               registered clients at once (default 256)\n"
		"  --max-inflight N              requests in flight per client (default 64)\n"
		"  --max-tokens-per-client N     tokens a client's requests in flight may add up to:\n"
		"                                prompt + max_tokens x sequences each (default 0 = no limit)\n"
		"  --max-blocks-per-client N     KV blocks a client's requests in flight may need at\n"
		"                                most, counted before admission (default 0 = no limit)\n"
		"  --max-clients-per-uid N       registered clients one user (uid) may have at once\n"
		"                                (default 0: a quarter of --max-clients)\n"
		"  --max-tokens-per-uid N        like --max-tokens-per-client, over all clients of a uid\n"
		"  --max-blocks-per-uid N        like --max-blocks-per-client, over all clients of a uid\n"
		"                                (defaults 0 = no limit)\n"
		"  --trusted-uid UID[:FACTOR]    a multiplexing client (pinfer-server serving many users\n"
		"                                under one uid, with limits of its own): its per-uid limits\n"
		"                                are multiplied by FACTOR, or lifted without one\n"
		"                                (repeatable, up to 16; --max-clients still holds)\n"
		"  --stall-timeout SECONDS       cancel requests of a client that stops reading (default 60)\n"
		"  --handshake-timeout SECONDS   a connection's registration must be complete this long after\n"
		"                                it connects, or it is dropped (default 5; fractions allowed)\n"
		"  --drain-timeout SECONDS       on SIGTERM/SIGINT, let in-flight requests finish this long,\n"
		"                                then save the rest to the state file and exit (default 30);\n"
		"                                a second SIGTERM/SIGINT (Ctrl-C) saves them at once\n"
		"  --state-file PATH             where unfinished requests survive a restart (default\n"
		"                                $STATE_DIRECTORY/pinferd.state, /var/lib/pinfer/pinferd.state\n"
		"                                as root, else $XDG_STATE_HOME/pinfer/; one per --instance\n"
		"                                or --socket);\n"
		"                                \"none\": cancel them instead\n"
		"  --resume-timeout SECONDS      how long a restored request waits for its client to\n"
		"                                reattach before it is dropped (default 600)\n"
		"  --log-level LEVEL             error, warn, info or debug (default info)\n"
		"  --allow-uid UID               only these users may connect (repeatable; default: anyone\n"
		"  --allow-gid GID               the socket's permissions let in), or these groups\n"
		"  --socket-mode OCTAL           permissions of the socket file (default 0660)\n"
		"  --sq-entries N, --cq-entries N, --payload-bytes N\n"
		"                                per-client ring sizes (defaults 64, 1024, 1048576)\n"
		"  --echo-backend                IPC benchmarking: no model; every request is answered at once\n"
		"                                with max_tokens tokens echoing its prompt bytes\n"
		"  --help, --version\n");
}

static int bad(const char *name, const char *val, const char *want)
{
	fprintf(stderr, "pinferd: --%s: '%s' is not %s\n", name, val, want);
	return -EINVAL;
}

static int int_arg(const char *name, const char *v, long lo, long hi, long *ret)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 0);
	if (errno || end == v || *end || x < lo || x > hi) {
		char want[64];
		snprintf(want, sizeof(want), "an integer in %ld..%ld", lo, hi);
		return bad(name, v, want);
	}
	*ret = x;
	return 0;
}

static int size_arg(const char *name, const char *v, int64_t *ret)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	double mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (errno || end == v || *end || !isfinite(x) || x <= 0 || x * mul > 1e15)
		return bad(name, v, "a size like 512M or 4G");
	*ret = (int64_t)(x * mul);
	return 0;
}

static int copy_str(const char *name, const char *v, char *dst, size_t cap)
{
	if (strlen(v) >= cap)
		return bad(name, v, "short enough");
	strcpy(dst, v);
	return 0;
}

/* Apply one option; shared by flags and config lines. */
static int apply(struct pf_daemon_config *c, int id, const char *name, const char *v)
{
	long x;
	int r = 0;
	switch (id) {
	case O_MODEL: return copy_str(name, v, c->model, sizeof(c->model));
	case O_CONFIG: return copy_str(name, v, c->config_file, sizeof(c->config_file));
	case O_SOCKET: return copy_str(name, v, c->socket_path, sizeof(c->socket_path));
	case O_INSTANCE: return copy_str(name, v, c->instance, sizeof(c->instance));
	case O_THREADS: r = int_arg(name, v, 0, 1024, &x); c->threads = (int)x; break;
	case O_KV: return size_arg(name, v, &c->kv_memory);
	case O_DEVICE:
		if (pf_device_parse(v, &c->device))
			return bad(name, v, "cpu, cuda, cuda:N or auto");
		break;
	case O_GPU_UTIL: {
		char *end;
		double f = strtod(v, &end);
		if (*end || !(f > 0 && f <= 1))
			return bad(name, v, "a fraction in (0, 1]");
		c->gpu_memory_utilization = f;
		break;
	}
	case O_BS:
		r = int_arg(name, v, 8, 32, &x);
		if (!r && x != 8 && x != 16 && x != 32)
			return bad(name, v, "8, 16 or 32");
		c->block_size = (int32_t)x;
		break;
	case O_MML: r = int_arg(name, v, 1, 1 << 24, &x); c->max_model_len = (int32_t)x; break;
	case O_SEQS: r = int_arg(name, v, 1, 65536, &x); c->max_num_seqs = (int32_t)x; break;
	case O_TOKENS: r = int_arg(name, v, 1, 1 << 20, &x); c->max_batched_tokens = (int32_t)x; break;
	case O_STEP_MS: r = int_arg(name, v, 0, 600000, &x); c->max_step_ms = (int32_t)x; break;
	case O_NOPREFIX: c->prefix_caching = false; break;
	case O_ECHO: c->echo_backend = true; break;
	case O_DRAIN: r = int_arg(name, v, 0, 86400, &x); c->drain_timeout_s = (int32_t)x; break;
	case O_POLICY:
		if (!strcmp(v, "fcfs"))
			c->priority_policy = false;
		else if (!strcmp(v, "priority"))
			c->priority_policy = true;
		else
			return bad(name, v, "fcfs or priority");
		break;
	case O_CLIENTS: r = int_arg(name, v, 1, 65536, &x); c->max_clients = (int32_t)x; break;
	case O_INFLIGHT: r = int_arg(name, v, 1, 65536, &x); c->max_inflight = (int32_t)x; break;
	case O_STATE: r = copy_str(name, v, c->state_file, sizeof(c->state_file)); break;
	case O_RESUME_TO: r = int_arg(name, v, 1, 86400 * 7, &x); c->resume_timeout_s = (int32_t)x; break;
	case O_QTOKENS: r = int_arg(name, v, 0, 1L << 40, &x); c->max_client_tokens = x; break;
	case O_QBLOCKS: r = int_arg(name, v, 0, 1L << 31, &x); c->max_client_blocks = x; break;
	case O_UID_CLIENTS: r = int_arg(name, v, 0, 65536, &x); c->max_uid_clients = (int32_t)x; break;
	case O_UID_TOKENS: r = int_arg(name, v, 0, 1L << 40, &x); c->max_uid_tokens = x; break;
	case O_UID_BLOCKS: r = int_arg(name, v, 0, 1L << 31, &x); c->max_uid_blocks = x; break;
	case O_TRUSTED: {
		char *end;
		errno = 0;
		long uid = strtol(v, &end, 10), f = 0;
		if (errno || end == v || uid < 0 || uid > 0x7fffffff || (*end && *end != ':'))
			return bad(name, v, "UID or UID:FACTOR");
		if (*end == ':') {
			char *fend;
			f = strtol(end + 1, &fend, 10);
			if (errno || fend == end + 1 || *fend || f < 1 || f > 1000000)
				return bad(name, v, "UID or UID:FACTOR with a FACTOR in 1..1000000");
		}
		if (c->n_trusted == 16)
			return bad(name, v, "one of at most 16 trusted uids");
		c->trusted_uids[c->n_trusted] = (uint32_t)uid;
		c->trusted_factor[c->n_trusted++] = (int32_t)f;
		break;
	}
	case O_STALL: r = int_arg(name, v, 1, 86400, &x); c->stall_timeout_s = (int32_t)x; break;
	case O_HANDSHAKE: {
		char *end;
		errno = 0;
		double t = strtod(v, &end);
		if (errno || end == v || *end || !(t >= 0.01 && t <= 3600))
			return bad(name, v, "a number of seconds in 0.01..3600");
		c->handshake_timeout_ms = (int32_t)(t * 1000 + 0.5);
		break;
	}
	case O_LOG:
		if (!strcmp(v, "error")) c->log_level = PF_LOG_ERROR;
		else if (!strcmp(v, "warn")) c->log_level = PF_LOG_WARN;
		else if (!strcmp(v, "info")) c->log_level = PF_LOG_INFO;
		else if (!strcmp(v, "debug")) c->log_level = PF_LOG_DEBUG;
		else return bad(name, v, "error, warn, info or debug");
		break;
	case O_UID:
		if (c->n_allow_uids == 16)
			return bad(name, v, "one of at most 16 uids");
		r = int_arg(name, v, 0, 0x7fffffff, &x);
		c->allow_uids[c->n_allow_uids++] = (uint32_t)x;
		break;
	case O_GID:
		if (c->n_allow_gids == 16)
			return bad(name, v, "one of at most 16 gids");
		r = int_arg(name, v, 0, 0x7fffffff, &x);
		c->allow_gids[c->n_allow_gids++] = (uint32_t)x;
		break;
	case O_MODE: {
		char *end;
		errno = 0;
		long m = strtol(v, &end, 8);
		if (errno || *end || end == v || m < 0 || m > 0777)
			return bad(name, v, "an octal mode like 0660");
		c->socket_mode = (int)m;
		break;
	}
	case O_SQ: case O_CQ: {
		long hi = id == O_SQ ? PF_SQ_MAX : PF_CQ_MAX;
		r = int_arg(name, v, 16, hi, &x);
		if (!r && (x & (x - 1)))
			return bad(name, v, "a power of two");
		*(id == O_SQ ? &c->sq_entries : &c->cq_entries) = (uint32_t)x;
		break;
	}
	case O_PAYLOAD: r = int_arg(name, v, 4096, PF_PAYLOAD_MAX, &x); c->payload_bytes = (uint32_t)x; break;
	case O_BATCHING:
		if (!strcmp(v, "continuous"))
			c->static_batching = false;
		else if (!strcmp(v, "static"))
			c->static_batching = true;
		else
			return bad(name, v, "continuous or static");
		break;
	case O_STATIC_BATCH: r = int_arg(name, v, 1, 65536, &x); c->static_batch = (int32_t)x; break;
	case O_SWAP:
		if (!strcmp(v, "0")) { /* size_arg takes only positive sizes */
			c->swap_space = 0;
			break;
		}
		return size_arg(name, v, &c->swap_space);
	case O_PREEMPT:
		if (!strcmp(v, "auto"))
			c->preemption_mode = PF_PREEMPT_AUTO;
		else if (!strcmp(v, "recompute"))
			c->preemption_mode = PF_PREEMPT_RECOMPUTE;
		else if (!strcmp(v, "swap"))
			c->preemption_mode = PF_PREEMPT_SWAP;
		else
			return bad(name, v, "auto, recompute or swap");
		break;
	default: return -EINVAL;
	}
	return r;
}

int64_t pf_daemon_uid_limit(const struct pf_daemon_config *c, uint32_t uid, int64_t base)
{
	if (base <= 0)
		return 0;
	for (int i = 0; i < c->n_trusted; i++)
		if (c->trusted_uids[i] == uid)
			return c->trusted_factor[i] ? base * c->trusted_factor[i] : 0;
	return base;
}

int64_t pf_daemon_uid_clients(const struct pf_daemon_config *c)
{
	if (c->max_uid_clients > 0)
		return c->max_uid_clients;
	return c->max_clients / 4 > 0 ? c->max_clients / 4 : 1;
}

/* One setting of a config file (pf_conf_read_file's callback). */
static int file_setting(void *ctx, const char *path, int lineno, const char *key, const char *val)
{
	struct pf_daemon_config *c = ctx;
	const struct option *o = NULL;
	for (const struct option *q = opts; q->name; q++)
		if (!strcmp(q->name, key))
			o = q;
	if (!o || o->val == O_CONFIG || o->val == O_HELP || o->val == O_VERSION) {
		fprintf(stderr, "pinferd: %s:%d: unknown option '%s'\n", path, lineno, key);
		return -EINVAL;
	}
	if ((o->has_arg == required_argument) != (val != NULL)) {
		fprintf(stderr, "pinferd: %s:%d: '%s' %s a value\n", path, lineno, key,
			o->has_arg == required_argument ? "needs" : "takes no");
		return -EINVAL;
	}
	int r = apply(c, o->val, key, val ? val : "");
	if (r)
		fprintf(stderr, "pinferd: (in %s:%d)\n", path, lineno);
	return r;
}

/* The main config file, then its drop-ins (conf.h: the syntax and order). */
static int load_files(struct pf_daemon_config *c, const char *path, bool must_exist)
{
	int r = pf_conf_read_file(path, file_setting, c);
	if (r == -ENOENT && must_exist)
		fprintf(stderr, "pinferd: cannot read config file %s: %s\n", path, strerror(ENOENT));
	if (r && (r != -ENOENT || must_exist))
		return r;
	char **drop;
	int n;
	r = pf_conf_dropins(path, &drop, &n);
	if (r) {
		fprintf(stderr, "pinferd: cannot read the drop-in directory %s.d: %s\n", path, strerror(-r));
		return r;
	}
	for (int i = 0; i < n && !r; i++) {
		r = pf_conf_read_file(drop[i], file_setting, c);
		if (r == -ENOENT) /* gone since it was listed */
			r = 0;
	}
	pf_conf_free_list(drop, n);
	return r;
}

int pf_daemon_config_parse(struct pf_daemon_config *c, int argc, char **argv)
{
	memset(c, 0, sizeof(*c));
	c->kv_memory = 0; /* the device's default */
	c->device = PF_DEVICE_AUTO;
	c->gpu_memory_utilization = 0.90;
	c->block_size = 16;
	c->max_num_seqs = 256;
	c->max_batched_tokens = 2048;
	c->prefix_caching = true;
	c->max_clients = 256;
	c->max_inflight = 64;
	c->stall_timeout_s = 60;
	c->handshake_timeout_ms = 5000;
	c->drain_timeout_s = 30;
	c->log_level = PF_LOG_INFO;
	c->socket_mode = 0660;
	c->sq_entries = PF_SQ_DEFAULT;
	c->cq_entries = PF_CQ_DEFAULT;
	c->payload_bytes = PF_PAYLOAD_DEFAULT;
	c->static_batch = 8;
	c->swap_space = -1; /* the device's default */
	c->preemption_mode = PF_PREEMPT_AUTO;
	c->resume_timeout_s = 600;

	/* first pass: only --config, --help and --version */
	bool explicit_config = false;
	int ch;
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == O_HELP) {
			usage(stdout);
			return 1;
		}
		if (ch == O_VERSION) {
			printf("pinferd (pinfer) protocol %d\n", PF_PROTO_VERSION);
			return 1;
		}
		if (ch == O_CONFIG) {
			snprintf(c->config_file, sizeof(c->config_file), "%s", optarg);
			explicit_config = true;
		}
	}
	if (!explicit_config)
		snprintf(c->config_file, sizeof(c->config_file), "%s", DEFAULT_CONFIG);
	int r = load_files(c, c->config_file, explicit_config);
	if (r)
		return r;
	opterr = 1;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == '?' || ch == ':') {
			usage(stderr);
			return -EINVAL;
		}
		const char *name = "";
		for (const struct option *q = opts; q->name; q++)
			if (q->val == ch)
				name = q->name;
		if (ch != O_CONFIG && apply(c, ch, name, optarg ? optarg : ""))
			return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "pinferd: unexpected argument '%s' (see --help)\n", argv[optind]);
		return -EINVAL;
	}
	if (!c->model[0] && !c->echo_backend) {
		fprintf(stderr, "pinferd: --model PATH is required (a GGUF file; see --help)\n");
		return -EINVAL;
	}
	return 0;
}
