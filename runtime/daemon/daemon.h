/*
 * daemon.h — pinferd's internals: configuration, client sessions, the two
 * loops.
 *
 * Threads:
 *   control thread  accepts registrations on the unix socket (handshake,
 *                   memfd creation), watches every client's socket and pidfd
 *                   and the signalfd, on io_uring (poll(2) when io_uring is
 *                   unavailable).  It never touches the engine.
 *   engine thread   owns the engine and every session's rings: each
 *                   iteration polls the SQ rings, submits/cancels, runs one
 *                   engine step, posts completions, wakes sleepers — the
 *                   step's wakes batched into one io_uring_enter (struct
 *                   pf_waker; one syscall per sleeper without io_uring).
 *
 * Hand-over between them is a mutex-protected inbox (new sessions, dead
 * sessions, drain) plus a futex word the control thread bumps to wake an
 * idle engine; nothing on the per-token path takes the lock.
 *
 * Session lifecycle:
 *   control: accept → hello/welcome → inbox(NEW)
 *   engine:  NEW → ACTIVE (polled every step)
 *   control: socket HUP or pidfd readable → mark dead → inbox(DEAD)
 *   engine:  cancel its requests (blocks return this step) → free session
 */
#ifndef PF_DAEMON_H
#define PF_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <liburing.h>

#include "runtime/engine/engine.h"
#include "shm/proto.h"
#include "shm/stats.h"
#include "shm/uring.h"

enum pf_log_level { PF_LOG_ERROR = 0, PF_LOG_WARN = 1, PF_LOG_INFO = 2, PF_LOG_DEBUG = 3 };

struct pf_daemon_config {
	char model[4096];
	char socket_path[108];
	char instance[65];
	char config_file[4096];
	int threads;
	int64_t kv_memory;           /* 0: the device's default */
	int64_t swap_space;          /* bytes; < 0: the device's default */
	int32_t preemption_mode;     /* enum pf_preempt_mode */
	int device;                  /* PF_DEVICE_* (device.h) or a CUDA index */
	double gpu_memory_utilization;
	int32_t block_size;
	int32_t max_model_len;
	int32_t max_num_seqs;
	int32_t max_batched_tokens;
	int32_t max_step_ms;         /* 0: off; else the step time the prefill budget aims at */
	bool prefix_caching;
	bool priority_policy;
	int32_t max_clients;
	int32_t max_inflight;        /* requests in flight per client */
	int64_t max_client_tokens;   /* quota: prompt + max_tokens x seqs over a client's requests; 0: none */
	int64_t max_client_blocks;   /* quota: worst-case KV blocks over a client's requests; 0: none */
	int32_t max_uid_clients;     /* registered clients per uid; 0: a quarter of max_clients */
	int64_t max_uid_tokens;      /* the token quota over all of a uid's clients; 0: none */
	int64_t max_uid_blocks;      /* the KV-block quota over all of a uid's clients; 0: none */
	uint32_t trusted_uids[16];   /* uids whose per-uid limits are multiplied ... */
	int32_t trusted_factor[16];  /* ... by this (0: no per-uid limits at all) */
	int n_trusted;
	int32_t stall_timeout_s;
	int32_t handshake_timeout_ms; /* a registration's hello must be complete this long after accept */
	int32_t drain_timeout_s;     /* SIGTERM: in-flight requests get this long */
	char state_file[4096];       /* "" = the default place, "none" = no persistence */
	int32_t resume_timeout_s;    /* restored requests wait this long for their client */
	int32_t log_level;
	uint32_t sq_entries, cq_entries, payload_bytes;
	uint32_t allow_uids[16], allow_gids[16];
	int n_allow_uids, n_allow_gids;
	int socket_mode;             /* permissions of the socket file */
	bool echo_backend;           /* IPC benchmark: return tokens without a model */
	bool static_batching;        /* --batching static: the scheduler's measured baseline */
	int32_t static_batch;        /* requests per static batch */
};

struct pf_daemon;
struct pf_session;
struct pf_state_record;

/* A request as the daemon tracks it (the engine's req_user). */
struct pf_dreq {
	struct pf_session *s;
	uint64_t tag;
	uint64_t engine_id;
	int32_t n_live;           /* sequences still running */
	int64_t deadline_ns;      /* 0: none */
	int64_t quota_tokens, quota_blocks; /* what it counts against its client's quotas */
	bool suspended;           /* saved to the state file: post nothing more */
	bool has_token;           /* resume_token issued */
	uint8_t resume_token[16]; /* issued when it is suspended */
	uint32_t skip[PF_RESUME_MAX_SEQS]; /* resumed: replayed tokens the client already has, per sequence */
	/* statistics (engine thread): the whole prompt counts once in
	 * prompt_tokens_total when the request's first token comes, cached
	 * tokens included (vLLM's meaning); each sequence's previous token time
	 * gives one inter-token latency observation per token */
	int32_t n_prompt;
	bool prompt_counted;
	int64_t last_token_ns[PF_RESUME_MAX_SEQS];
	struct pf_dreq *prev, *next;
};

/* What all sessions of one uid hold against the per-uid quotas (engine
 * thread; shared by the uid's sessions, freed with the last of them). */
struct pf_uid_usage {
	uint32_t uid;
	int32_t sessions;
	int64_t tokens, blocks;
	/* malformed submissions of the uid's clients, kept across reconnects
	 * (the record outlives its last session while this is not 0), forgiven
	 * after PF_BAD_FORGIVE_NS without one */
	int32_t bad_entries;
	int64_t bad_last_ns;
	struct pf_uid_usage *next;
};

/* Registered clients of one uid (control thread). */
struct pf_uid_count {
	uint32_t uid;
	int32_t n;
};

struct pf_session {
	struct pf_daemon *d;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char comm[32];
	int sock, pidfd;             /* owned by the control thread */
	int c2d_fd, d2c_fd;
	int efd;                     /* write end of the wake pipe (v2 clients; -1 for v1), engine thread closes it */
	uint16_t version;            /* protocol version spoken with this client */
	struct pf_c2d_hdr *c2d;      /* client-writable: never trusted */
	struct pf_d2c_hdr *d2c;
	size_t c2d_bytes, d2c_bytes;
	struct pf_sqe *sq;           /* inside c2d */
	uint8_t *payload;            /* inside c2d */
	struct pf_cqe *cq;           /* inside d2c */
	uint32_t sq_n, cq_n, payload_n;
	uint32_t sq_head, cq_tail;   /* daemon-private copies of the indices it owns */
	/* completions that did not fit the CQ; bounded because a full CQ
	 * pauses the session's sequences */
	struct pf_cqe *pending;
	uint32_t n_pending, cap_pending;
	bool paused;
	int64_t paused_since_ns;
	bool cq_dirty;               /* posted since the last wake */
	_Atomic bool dead;
	int32_t n_inflight;
	int32_t bad_entries;         /* malformed submissions; repeat offenders are disconnected */
	int32_t bad_counted;         /* of them, already added to usage->bad_entries */
	uint64_t tokens_in, tokens_out, errors;
	int64_t quota_tokens, quota_blocks; /* summed over reqs */
	struct pf_uid_usage *usage;  /* engine thread: its uid's totals (NULL until it reaches the engine) */
	struct pf_dreq *reqs;
	struct pf_session *next;     /* engine's active list; control's new-session inbox link */
	struct pf_session *dead_next;/* control's dead-session inbox link (next is still the engine's) */
};

/*
 * The engine thread's wake batcher: pf_waker_add queues a sleeper's wake
 * (FUTEX_WAKE and/or an eventfd write), pf_waker_flush issues them — with
 * io_uring as one io_uring_enter for the whole step (successful
 * completions are skipped, so the CQ only ever holds failures), without it
 * as one syscall each.
 */
struct pf_waker {
	bool uring, uring_futex;
	struct io_uring ring;
	uint32_t queued;
	uint64_t one;                /* the eventfd increment; must outlive the SQEs */
	uint64_t failures;
};

int pf_waker_init(struct pf_waker *w, const struct pf_uring_caps *caps);
void pf_waker_add(struct pf_waker *w, _Atomic uint32_t *futex_word, int efd);
void pf_waker_flush(struct pf_waker *w);
void pf_waker_destroy(struct pf_waker *w);

/* A request restored from the state file, waiting for its client's RESUME
 * (engine thread).  Its records' arrays live in `recs`. */
struct pf_parked {
	uint32_t uid;
	uint8_t token[16];
	struct pf_engine_snapshot seqs[PF_RESUME_MAX_SEQS];
	int32_t n_seqs;
	int64_t expires_ns;
	struct pf_parked *next;
};

/* A prompt tokenized off the engine thread (daemon_tokenize.c). */
struct pf_tokjob {
	/* engine thread only */
	struct pf_session *s;        /* NULL once its client is gone */
	uint64_t tag;
	int64_t deadline_ns;         /* 0: none; counted from the submission */
	struct pf_request_params p;
	_Atomic bool cancelled;      /* its client was answered (cancel) or is gone: the
				      * worker skips it (the one field both threads read) */
	struct pf_tokjob *prev, *next; /* d->tokjobs */
	/* the worker's input, then its output */
	struct pf_sqe e;
	uint8_t *in;                 /* the payload's copy */
	int r;
	int32_t *prompt, n_prompt;
	char err[256];
	struct pf_tokjob *q_next;    /* the worker's queue, then the done list (under lock) */
};

struct pf_tokenizer {
	bool started;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pf_tokjob *todo, *todo_tail, *done; /* under lock */
	bool stop;                   /* under lock */
	_Atomic uint32_t n_done;     /* done jobs not yet collected (a hint for idle_wait) */
};

/* Text and chat prompts longer than this are tokenized by the worker. */
#define PF_TOKENIZE_INLINE_BYTES 1024

struct pf_daemon {
	struct pf_daemon_config cfg;
	char state_path[4096];       /* resolved; "" = persistence off */
	struct pf_parked *parked;    /* engine thread */
	bool state_saved;            /* engine thread: the drain wrote the state file */
	struct pf_state_record *state_recs; /* what parked points into */
	struct pf_uring_caps uring;  /* probed once at start */
	struct pf_waker waker;       /* engine thread */
	struct pf_engine *engine;
	char socket_path[108];
	int listen_fd;
	int signal_fd;
	int reserve_fd;              /* control thread: spare descriptor for EMFILE (see accept_client) */
	/* inbox: control → engine */
	pthread_mutex_t lock;
	struct pf_session *inbox_new, *inbox_dead;
	_Atomic uint32_t wake;       /* futex word: the engine thread sleeps on it too */
	_Atomic bool draining;
	_Atomic bool drain_now;      /* a second SIGINT/SIGTERM: save what still runs and exit, now */
	bool drain_announced;        /* engine thread: DRAINING published to sessions */
	_Atomic bool stop;
	/* engine thread only */
	struct pf_tokjob *tokjobs;   /* every prompt handed to the worker, not yet collected */
	int32_t n_tokjobs;
	struct pf_tokenizer tok;     /* its worker */
	struct pf_session *sessions;
	int n_sessions;
	uint64_t next_session_id;
	_Atomic int n_clients;       /* for the control thread's max_clients check */
	struct pf_uid_count *uid_clients; /* control thread: registered clients per uid */
	int n_uid_clients, cap_uid_clients;
	struct pf_uid_usage *uid_usage; /* engine thread: per-uid quota totals */
	_Atomic int log_level;       /* read by both threads; SIGHUP changes it */
	int argc;                    /* the command line, read again on SIGHUP */
	char **argv;
	struct pf_daemon_config *reload; /* SIGHUP → engine thread, under lock */
	struct pf_daemon_config *cfg_seen; /* control thread: the configuration last applied, for SIGHUP */
	/* statistics: accumulated privately, published to the read-only segment */
	struct pf_stats acc;
	struct pf_stats *stats;
	int stats_fd;
	uint64_t start_ms, last_publish_ms;
};

/* Options: defaults, then the config file, then flags (flags win).
 * Returns 0, 1 when --help/--version printed and the program should exit 0,
 * or -EINVAL with a message on stderr. */
int pf_daemon_config_parse(struct pf_daemon_config *cfg, int argc, char **argv);

/* The per-uid limit `base` as it applies to uid: base, base x the factor
 * of a --trusted-uid UID:FACTOR, or 0 (none) for a --trusted-uid UID or
 * when base is 0.  Cannot fail. */
int64_t pf_daemon_uid_limit(const struct pf_daemon_config *c, uint32_t uid, int64_t base);
/* --max-clients-per-uid, its default (0) resolved.  Cannot fail. */
int64_t pf_daemon_uid_clients(const struct pf_daemon_config *c);

/* Per-uid quota totals (engine thread): attach a session that reaches the
 * engine to its uid's totals (-ENOMEM leaves s->usage NULL: the session is
 * then refused its requests), detach it when it is freed. */
int pf_uid_usage_attach(struct pf_daemon *d, struct pf_session *s);
void pf_uid_usage_detach(struct pf_daemon *d, struct pf_session *s);

/* Log a line to stderr with a timestamp and level, if enabled. */
__attribute__((format(printf, 3, 4)))
void pf_daemon_log(const struct pf_daemon *d, int level, const char *fmt, ...);

/* Statistics (engine thread; init before the control thread starts). */
int pf_daemon_stats_init(struct pf_daemon *d);
void pf_daemon_stats_observe(struct pf_daemon *d, int hist, double v);
void pf_daemon_stats_publish(struct pf_daemon *d, bool force);

/* Persistence (daemon_persist.c).  pf_daemon_state_load: at start, after
 * the engine exists — read the state file, park its requests for their
 * clients, remove the file; a bad file is quarantined and logged.
 * pf_daemon_state_save: at the end of a drain — suspend every unfinished
 * request of a v2 client (SUSPENDED completion with its resume token) and
 * write them and the still-parked ones to the state file; returns the
 * number saved or -errno (then the caller cancels).  pf_daemon_resume: a
 * RESUME submission.  pf_daemon_parked_expire: drop parked requests whose
 * client did not come back in time. */
void pf_daemon_state_load(struct pf_daemon *d);
int pf_daemon_state_save(struct pf_daemon *d);
void pf_daemon_resume(struct pf_session *s, const struct pf_sqe *e);
void pf_daemon_parked_expire(struct pf_daemon *d, int64_t now_ns);
void pf_daemon_parked_free(struct pf_daemon *d);
/* Internal to the daemon: an ERROR completion for tag; a new request's
 * bookkeeping (list, in-flight count). */
void pf_session_post_error(struct pf_session *s, uint64_t tag, int code, const char *msg);
void pf_session_add_req(struct pf_session *s, struct pf_dreq *q);
/* Charge q's quota figures to its session and the session's uid (released
 * when q is removed). */
void pf_session_charge(struct pf_session *s, struct pf_dreq *q, int64_t tokens, int64_t blocks);
/* The per-client token and KV-block quotas for a request of n_prompt
 * tokens with params p: its charges, or -EDQUOT with a message. */
int pf_session_check_quota(const struct pf_session *s, int32_t n_prompt, const struct pf_request_params *p,
			   int64_t *ret_tokens, int64_t *ret_blocks, char *err, size_t errlen);

/* SIGHUP (daemon_reload.c): pf_daemon_reload on the control thread parses
 * the configuration again, applies its own fields and hands the engine's
 * to the engine thread through the inbox (d->reload); it applies them with
 * pf_daemon_apply_reload (which frees nc; NULL: nothing to do).
 * Both log what changed; neither fails (errors keep the running config). */
void pf_daemon_reload(struct pf_daemon *d);
void pf_daemon_apply_reload(struct pf_daemon *d, struct pf_daemon_config *nc);

/*
 * Registrations in progress (daemon_handshake.c; control thread).  The
 * control loops never wait on one peer: pf_handshake_accept takes a
 * connection (non-blocking socket, peer credentials, deadline
 * --handshake-timeout from now); pf_handshake_step reads what has arrived
 * of its hello whenever the socket is readable; pf_handshake_expire drops
 * it when the deadline passes first.
 */
struct pf_handshake {
	int sock;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint32_t got;                /* bytes of hello received */
	struct pf_hello hello;
	int64_t deadline_ns;         /* CLOCK_MONOTONIC (pf_daemon_now_ns) */
};

/* CLOCK_MONOTONIC in nanoseconds.  Cannot fail. */
int64_t pf_daemon_now_ns(void);
/* Accept one connection.  Returns 0 with *ret the new handshake (NULL when
 * that connection was dealt with at once), -EAGAIN when nobody is waiting,
 * another -errno to stop accepting for this round. */
int pf_handshake_accept(struct pf_daemon *d, struct pf_handshake **ret);
/* Take what has arrived of h's hello.  Returns 0 when more is needed (wait
 * for the socket to be readable again), 1 when the handshake is over: h is
 * freed and *ret is the new session (which owns the socket) or NULL (the
 * connection was refused or was a stats reader; its socket is closed). */
int pf_handshake_step(struct pf_daemon *d, struct pf_handshake *h, struct pf_session **ret);
/* h's deadline passed: tell the peer why, close, free h. */
void pf_handshake_expire(struct pf_daemon *d, struct pf_handshake *h);
/* Shutdown: close and free h (NULL is fine). */
void pf_handshake_abandon(struct pf_handshake *h);
/* A registered client of uid is gone: one less against --max-clients-per-uid. */
void pf_handshake_uid_gone(struct pf_daemon *d, uint32_t uid);

/* Control thread body (arg: struct pf_daemon *). */
void *pf_daemon_control_main(void *arg);

/* Bind and listen on the socket (before READY).  Returns 0 or -errno. */
int pf_daemon_listen(struct pf_daemon *d);

/*
 * Prompts into tokens (daemon_tokenize.c).  pf_daemon_build_prompt: a
 * submission's text, chat or token input as prompt ids (a malloc'ed array),
 * refusing (-E2BIG) text that cannot fit the context with max_tokens
 * before tokenizing it; any thread (it reads only the engine's tokenizer
 * and template).  Returns 0 or a negative errno with a message.
 * The worker (engine thread calls): pf_tokenize_start/stop; wanted: should
 * this submission go to it; queue: hand it over (takes `in`; counts as one
 * of the client's requests in flight); collect: submit the prompts the
 * worker finished (each iteration); cancel: a CANCEL for a queued tag
 * (true when it was one: FINISHED CANCELLED posted); cancel_all: every one
 * of the session's; forget: the session is going away.
 */
int pf_daemon_build_prompt(const struct pf_engine *eng, const struct pf_sqe *e, const uint8_t *in, int32_t max_tokens,
			   int32_t **ret, int32_t *ret_n, char *err, size_t errlen);
int pf_tokenize_start(struct pf_daemon *d);
void pf_tokenize_stop(struct pf_daemon *d);
bool pf_tokenize_wanted(const struct pf_daemon *d, const struct pf_sqe *e);
void pf_tokenize_queue(struct pf_session *s, const struct pf_sqe *e, const struct pf_request_params *p, uint8_t *in,
		       int64_t deadline_ns);
void pf_tokenize_collect(struct pf_daemon *d);
bool pf_tokenize_cancel(struct pf_session *s, uint64_t tag);
void pf_tokenize_cancel_all(struct pf_session *s);
void pf_tokenize_forget(struct pf_session *s);
/* Submit a request's prompt (not taken) to the engine: quotas, then the
 * engine; an ERROR completion when refused.  Engine thread. */
void pf_session_submit_prompt(struct pf_session *s, uint64_t tag, const struct pf_request_params *p,
			      const int32_t *prompt, int32_t n_prompt, int64_t deadline_ns);

/* Engine loop: returns when stop is set and every request has drained. */
int pf_daemon_engine_loop(struct pf_daemon *d);

/* Sessions (engine thread). */
int pf_session_create(struct pf_daemon *d, int sock, pid_t pid, uid_t uid, gid_t gid, uint32_t sq, uint32_t cq,
		      uint32_t payload, struct pf_session **ret);
void pf_session_free(struct pf_session *s);
/* Consume and act on the session's new submissions.  Returns entries consumed. */
int pf_session_poll_sq(struct pf_session *s);
/* Post one completion (or queue it when the CQ is full). */
void pf_session_post(struct pf_session *s, const struct pf_cqe *e);
/* Move pending completions into the CQ; update back-pressure. */
void pf_session_flush(struct pf_session *s);
/* Queue the client's wake on d->waker if it sleeps and completions were
 * posted; the caller flushes the waker once per step. */
void pf_session_wake(struct pf_session *s);
/* End every request of the session with `why` (it died: CANCELLED; it
 * stalled: STALLED). */
void pf_session_cancel_all(struct pf_session *s, enum pf_finish_reason why);
/* Engine callbacks that route output to sessions. */
extern const struct pf_engine_events pf_daemon_events;

/*
 * Validate a submission copied out of shared memory and turn it into
 * engine parameters.  `payload` is the daemon's private copy of the
 * entry's payload bytes.  On success fills *params and returns 0; on
 * failure returns -EINVAL (or -E2BIG) with a message in err.  Pure: no
 * shared memory, no engine — the fuzz harness drives it directly.
 */
int pf_sqe_to_params(const struct pf_sqe *e, const uint8_t *stop_bytes, uint32_t stop_len, const int32_t *stop_ids,
		     struct pf_request_params *params, char *err, size_t errlen);

#endif
