/*
 * pinfer.h — libpinfer, the client library of pinferd.  The one public
 * header: it needs only libc and exposes nothing of the shared-memory
 * protocol (shm/proto.h stays private to the library).
 *
 * Model.  pinfer_connect() registers with a running pinferd over its unix
 * socket and maps two shared-memory segments the daemon created for this
 * connection: a submission ring (requests; written by us) and a completion
 * ring (tokens; written by the daemon, mapped read-only).  Submitting and
 * reading completions are plain memory operations; a syscall happens only to
 * wake a sleeping daemon or to sleep ourselves when there is nothing to read.
 *
 *   pinfer_connect ─► submit_{text,tokens,chat} ─► pinfer_next ... ─► pinfer_close
 *                       (returns a tag)            (events carry the tag)
 *
 * Every request gets a tag, unique within its connection, chosen by the
 * library.  Its events arrive in order per (tag, index) — index is the
 * sequence number for n > 1 or the beam rank — and interleave freely across
 * tags and indices.  A request ends with a FINISHED event whose `last` flag
 * is set (one FINISHED per sequence; `last` on the final one) or with one
 * ERROR event (also `last`).
 *
 * Non-blocking submission: the rings have fixed sizes.  A submit returns
 * -EAGAIN when the submission ring or its payload area is full (the daemon
 * has not consumed earlier entries yet) or when the daemon's per-client
 * in-flight quota is reached; read events and retry.
 *
 * Waiting: pinfer_next() spins briefly, then sleeps; the daemon wakes it
 * only when it announced it sleeps.  It sleeps through io_uring where that
 * works (IORING_OP_FUTEX_WAIT on Linux >= 6.7, else a poll of the daemon's
 * wake eventfd) and with plain futex(2) where io_uring is unavailable;
 * PINFER_NO_IO_URING=1 forces the plain way; PINFER_SPINS=N sets how
 * many pause iterations it spins first (default 2000; 0 sleeps at once).
 * pinfer_wait_method() says
 * which.  Applications with their own event loop can fold the wait into it:
 * io_uring loops queue the futex wait themselves (pinfer_prep_futex_wait()),
 * epoll/poll loops watch the eventfd pinfer_wait_fd() returns.
 *
 * Daemon gone: a call that waits never hangs on a dead daemon — it notices
 * the closed socket within ~100 ms and returns -ECONNRESET; everything
 * after that returns -ECONNRESET too.  Reconnect with pinfer_close() +
 * pinfer_connect(); requests in flight on the old connection are lost.
 *
 * Thread-safety: a connection (struct pinfer) must be used by one thread at
 * a time (callers serialize, e.g. one connection per thread, or a mutex);
 * distinct connections are fully independent.  The library has no global
 * state and installs no signal handlers.  Not async-signal-safe.
 *
 * Errors: functions return >= 0 on success and a negative errno on failure;
 * pinfer_last_error() then describes the failure in words.
 */
#ifndef PINFER_H
#define PINFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API stays exported when the library is built with -fvisibility=hidden. */
#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility push(default)
#endif

struct pinfer;

/* ---- connecting --------------------------------------------------------------- */

struct pinfer_connect_opts {
	const char *socket_path;  /* [NULL] explicit socket; NULL: resolve as pinferd does */
	const char *instance;     /* [NULL] daemon instance name (pinferd --instance) */
	uint32_t sq_entries;      /* [0] submission ring size wish, power of two; 0: daemon default */
	uint32_t cq_entries;      /* [0] completion ring size wish, power of two; 0: daemon default */
	uint32_t payload_bytes;   /* [0] prompt payload area wish; 0: daemon default */
	int timeout_ms;           /* [10000] handshake timeout in ms; 0: the default; < 0: none */
	char *err;                /* [NULL] where pinfer_connect writes why it failed */
	size_t err_len;           /* [0] size of err */
};

/* Fill o with the defaults shown on the fields.  Cannot fail. */
void pinfer_connect_opts_init(struct pinfer_connect_opts *o);

/*
 * Register with pinferd and map this connection's rings.  opts may be NULL
 * (defaults).  The socket is resolved like pinferd resolves it: socket_path,
 * else $RUNTIME_DIRECTORY, /run/pinfer (root), $XDG_RUNTIME_DIR/pinfer,
 * /tmp/pinfer-UID — file pinferd[-INSTANCE].sock.
 * Returns 0 and the connection in *ret, or a negative errno with a message
 * in opts->err: -ENOENT/-ECONNREFUSED (no daemon at that path), -EACCES
 * (socket permissions, or the daemon's allow list), -EPROTONOSUPPORT
 * (protocol version or layout mismatch; the daemon's message is included),
 * -EBUSY (daemon at its client limit), -ESHUTDOWN (daemon draining),
 * -ETIMEDOUT (no answer within timeout_ms), -EPROTO (malformed answer),
 * -EINVAL (bad instance name or ring sizes), -ENOMEM.
 */
int pinfer_connect(const struct pinfer_connect_opts *opts, struct pinfer **ret);

/* Unmap the rings, close the socket (the daemon then cancels whatever is
 * still in flight) and free c.  Accepts NULL.  Cannot fail. */
void pinfer_close(struct pinfer *c);

/* Why the last failing call on c failed, in words (never NULL; "" when no
 * call failed yet).  Valid until the next call on c.  With c NULL: a fixed
 * string saying there is no connection. */
const char *pinfer_last_error(const struct pinfer *c);

/* Model and daemon facts from the handshake.  Cannot fail. */
const char *pinfer_model_name(const struct pinfer *c); /* as pinferd describes the model */
int32_t pinfer_n_vocab(const struct pinfer *c);
int32_t pinfer_max_model_len(const struct pinfer *c);   /* prompt + generated tokens per sequence */
int32_t pinfer_bos(const struct pinfer *c);             /* -1 when the model has none */
int32_t pinfer_eos(const struct pinfer *c);
uint32_t pinfer_max_inflight(const struct pinfer *c);   /* the daemon's per-client quota; 0: none */
const char *pinfer_socket_path(const struct pinfer *c);
uint32_t pinfer_inflight(const struct pinfer *c);       /* our requests not yet ended */

/* ---- requests ------------------------------------------------------------------ */

#define PINFER_MAX_N 16             /* completions per request (n) */
#define PINFER_MAX_BEAM_WIDTH 8     /* beams per request */
#define PINFER_MAX_STOP 8           /* stop strings per request */
#define PINFER_MAX_STOP_LEN 64      /* bytes per stop string */
#define PINFER_MAX_STOP_IDS 16      /* stop token ids per request */
#define PINFER_MAX_TOP_LOGPROBS 20  /* alternatives per token */

/*
 * Sampling and request parameters, vLLM's meanings.  Start from
 * pinfer_params_init(); [defaults] are shown (vLLM's; the pinfer CLI picks
 * its own for good answers out of the box — temperature 0.7, top-p 0.9,
 * 256 tokens — and says so in `pinfer --help`).  The library keeps no pointer
 * into this struct after a submit returns (stop strings/ids are copied).
 */
struct pinfer_params {
	float temperature;         /* [1.0] >= 0; 0 = greedy */
	float top_p;               /* [1.0] in (0, 1]; 1 = off */
	int32_t top_k;             /* [0] 0 or -1 = off */
	float min_p;               /* [0.0] in [0, 1]; 0 = off */
	float repetition_penalty;  /* [1.0] > 0; 1 = off (prompt + output tokens) */
	float presence_penalty;    /* [0.0] in [-2, 2] */
	float frequency_penalty;   /* [0.0] in [-2, 2] */
	int32_t max_tokens;        /* [16] >= 1 new tokens per sequence */
	int32_t min_tokens;        /* [0] 0..max_tokens: EOS/stops are ignored before this */
	int32_t n;                 /* [1] independent completions (1..16) */
	int32_t beam_width;        /* [0] beam search when > 1 (not with n > 1) */
	float length_penalty;      /* [1.0] beam score = logprob / length^length_penalty */
	bool has_seed;             /* [false] */
	uint64_t seed;             /* [-] used when has_seed: reproducible sampling */
	const char *const *stop;   /* [NULL] stop strings (NUL-terminated, 1..64 bytes) */
	size_t n_stop;             /* [0] <= PINFER_MAX_STOP */
	const int32_t *stop_ids;   /* [NULL] stop token ids */
	size_t n_stop_ids;         /* [0] <= PINFER_MAX_STOP_IDS */
	bool logprobs;             /* [false] report each chosen token's log-probability */
	int32_t top_logprobs;      /* [0] 0..20 alternatives per token (implies logprobs) */
	bool ignore_eos;           /* [false] keep generating past EOS */
	int32_t priority;          /* [0] lower runs first under the priority policy */
	uint32_t deadline_ms;      /* [0] 0: none; else the request ends (DEADLINE) after this long */
	bool add_special;          /* [true] text: add BOS/EOS as the model does */
	bool parse_special;        /* [false] text: turn special-token text (e.g. "<|im_end|>") into its token */
	bool no_text;              /* [false] token ids only, no detokenized text */
};

/* Fill p with the defaults shown on the fields.  Cannot fail. */
void pinfer_params_init(struct pinfer_params *p);

/* One chat message; the daemon renders the model's chat template. */
struct pinfer_message {
	const char *role;          /* "system", "user", "assistant" (NUL-terminated) */
	const char *content;       /* UTF-8, NUL-terminated */
};

/*
 * Queue a request whose prompt is len bytes of UTF-8 text (tokenized by the
 * daemon; see add_special/parse_special).  params may be NULL (defaults).
 * Never blocks.  Returns 0 and the request's tag in *ret_tag, or -EAGAIN
 * (rings full or in-flight quota reached: read events, then retry), -E2BIG
 * (the prompt can never fit the payload area), -EINVAL (bad parameters; see
 * pinfer_last_error), -ESHUTDOWN (daemon draining), -ECONNRESET (daemon
 * gone), -ENOMEM.  Parameters the library cannot check (e.g. prompt length
 * against the context) are checked by the daemon, which answers with an
 * ERROR event for the tag.
 */
int pinfer_submit_text(struct pinfer *c, const char *text, size_t len, const struct pinfer_params *params,
		       uint64_t *ret_tag);

/* As pinfer_submit_text with n token ids as the prompt (each in
 * [0, pinfer_n_vocab)); n >= 1. */
int pinfer_submit_tokens(struct pinfer *c, const int32_t *ids, size_t n, const struct pinfer_params *params,
			 uint64_t *ret_tag);

/* As pinfer_submit_text with a conversation (n >= 1 messages) that the
 * daemon renders with the model's chat template, adding the assistant
 * prompt; the daemon answers ERROR (ENOTSUP) for models without one. */
int pinfer_submit_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n,
		       const struct pinfer_params *params, uint64_t *ret_tag);

/*
 * The daemon's tokenizer, for clients that have none (pinfer-server).  Each
 * is a request like a generation (a tag, counted in flight, never blocks,
 * same returns as pinfer_submit_text) answered by one event: TOKENIZED for
 * a tokenize, DETOKENIZED for a detokenize, or ERROR.  They take no KV
 * blocks and run on the daemon's engine thread between steps.
 *
 * pinfer_submit_tokenize: the ids pinfer_submit_text would generate from
 * (params' add_special and parse_special apply; params may be NULL).
 * pinfer_submit_tokenize_chat: the ids of the conversation rendered with the
 * model's chat template, as pinfer_submit_chat would prompt with.
 * pinfer_submit_detokenize: the text of n ids as generation would stream it
 * (well-formed UTF-8; control tokens rendered only with params'
 * parse_special).
 */
int pinfer_submit_tokenize(struct pinfer *c, const char *text, size_t len, const struct pinfer_params *params,
			   uint64_t *ret_tag);
int pinfer_submit_tokenize_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n, uint64_t *ret_tag);
int pinfer_submit_detokenize(struct pinfer *c, const int32_t *ids, size_t n, const struct pinfer_params *params,
			     uint64_t *ret_tag);

/*
 * Ask the daemon to stop request `tag`.  Its live sequences then end with
 * FINISHED (reason CANCELLED) — keep reading events until `last`.  Never
 * blocks.  Returns 0, -ENOENT (no such request in flight), -EAGAIN
 * (submission ring full: read events and retry), -ECONNRESET.
 */
int pinfer_cancel(struct pinfer *c, uint64_t tag);

/* ---- events ---------------------------------------------------------------------- */

enum pinfer_event_kind {
	PINFER_EVENT_TOKEN = 1,     /* a generated token and the text it completes */
	PINFER_EVENT_FINISHED = 2,  /* a sequence ended; usage counts */
	PINFER_EVENT_ERROR = 3,     /* the request failed; nothing more for its tag */
	PINFER_EVENT_LOGPROBS = 4,  /* top alternatives of the sequence's last TOKEN */
	PINFER_EVENT_SUSPENDED = 5, /* pinferd is stopping and saved the request: after
				     * -ECONNRESET, pinfer_reconnect() once it is back and
				     * its events continue (no token repeated or skipped) */
	PINFER_EVENT_TOKENIZED = 6, /* the answer to pinfer_submit_tokenize*: the ids are
				     * pinfer_event_ids(); `last` is set */
	PINFER_EVENT_DETOKENIZED = 7, /* the answer to pinfer_submit_detokenize: `text`;
				       * `last` is set */
};

enum pinfer_finish_reason {
	PINFER_FINISH_STOP = 0,      /* EOS, a stop id or a stop string */
	PINFER_FINISH_LENGTH = 1,    /* max_tokens or the context limit */
	PINFER_FINISH_CANCELLED = 2, /* pinfer_cancel */
	PINFER_FINISH_ERROR = 3,     /* the engine failed mid-way */
	PINFER_FINISH_DEADLINE = 4,  /* deadline_ms passed */
	PINFER_FINISH_STALLED = 5,   /* we did not read completions for too long */
};

struct pinfer_usage {
	int32_t prompt_tokens;
	int32_t cached_tokens;       /* prompt tokens served from the prefix cache */
	int32_t generated_tokens;    /* this sequence's */
	double queue_s;              /* submit → first scheduled */
	double ttft_s;               /* submit → first token */
	double decode_s;             /* first token → finish */
};

/*
 * One event.  Fields not listed for a kind are zero.  `text` points into
 * the connection and stays valid until the next pinfer_next/pinfer_close on
 * it; it is always NUL-terminated (text_len excludes the NUL) and never
 * ends in a broken UTF-8 character.
 */
struct pinfer_event {
	enum pinfer_event_kind kind;
	uint64_t tag;
	uint32_t index;              /* sequence (n > 1) or beam rank */
	const char *text;            /* TOKEN: the text this token completes (may be "");
				      * FINISHED: text released at the end (held-back
				      * stop-string prefixes; beam search: the whole
				      * hypothesis); else "" */
	size_t text_len;
	bool truncated;              /* text or alternatives exceeded the library's caps */
	/* TOKEN */
	int32_t token;               /* -1: text only, no token */
	float logprob;               /* NAN unless logprobs were requested */
	/* FINISHED */
	enum pinfer_finish_reason reason;
	struct pinfer_usage usage;
	float beam_score;
	/* FINISHED and ERROR: the request is over (no more events for tag) */
	bool last;
	/* ERROR */
	int error;                   /* positive errno from the daemon */
	char message[128];
	/* LOGPROBS (best first) */
	uint32_t n_top;
	int32_t top_token[PINFER_MAX_TOP_LOGPROBS];
	float top_logprob[PINFER_MAX_TOP_LOGPROBS];
};

/*
 * Take the next event of any request.  timeout_ms: 0 = don't wait,
 * < 0 = wait forever, else at most that long.  Returns 0 with *ev filled,
 * or -EAGAIN (timeout_ms 0 and nothing ready), -ETIMEDOUT, -ENOMSG (no
 * request in flight, so nothing can arrive), -EINTR (a signal arrived while
 * sleeping, or pinfer_interrupt() was called; call again), -ECONNRESET (the daemon went away or shut down;
 * the events it posted before are still delivered first), -EPROTO (the
 * daemon broke the protocol).
 */
int pinfer_next(struct pinfer *c, struct pinfer_event *ev, int timeout_ms);

/*
 * Ask c's wait to stop: the pinfer_next in progress (or the next one that
 * would sleep) returns -EINTR within one sleep slice (~100 ms), whatever
 * SA_RESTART says, and pinfer_stream cancels its request.  The one function
 * of this library that is async-signal-safe — call it from a SIGINT
 * handler.  Cannot fail.
 */
void pinfer_interrupt(struct pinfer *c);

/* The token ids of the TOKENIZED event pinfer_next last returned on c and
 * their number in *n (valid until the next pinfer_next/pinfer_close on c);
 * NULL with *n = 0 when that event was not TOKENIZED.  Cannot fail. */
const int32_t *pinfer_event_ids(const struct pinfer *c, size_t *n);

/* 1 when completions are waiting to be read (pinfer_next(c, ev, 0) may
 * still return -EAGAIN if they are the first part of a longer text), 0 when
 * none, -ECONNRESET when the daemon is gone.  No syscalls. */
int pinfer_poll_ready(struct pinfer *c);

/*
 * io_uring integration (kernel >= 6.7).  Fill the 64-byte io_uring SQE at
 * `io_uring_sqe` (a struct io_uring_sqe from <linux/io_uring.h> or
 * liburing) with IORING_OP_FUTEX_WAIT on the connection's completion futex,
 * and announce to the daemon that we sleep.  Every field is overwritten:
 * set user_data (and any link flags) afterwards, then submit it on your
 * ring.  When its CQE arrives (any result: 0, -EAGAIN when the word already
 * changed, -ECANCELED, ...), or on any other reason to look, call
 * pinfer_next(c, ev, 0) until it returns -EAGAIN — every wake is a hint.
 * Do not call pinfer_next/pinfer_prep_futex_wait again on c while the wait
 * is queued unless you cancel it, or wake-ups may be lost.  Daemon death
 * does not complete the futex wait: also poll the socket
 * (pinfer_fd) for POLLHUP/POLLIN in the same ring if you wait unboundedly.
 * Returns 0 (SQE ready to submit), -EAGAIN (completions are already waiting:
 * don't sleep, read them), -ECONNRESET.
 */
int pinfer_prep_futex_wait(struct pinfer *c, void *io_uring_sqe);

/*
 * epoll/poll integration.  Announce to the daemon that we sleep and want
 * its wake as a write to the connection's wake descriptor (the read end of
 * a pipe only pinferd writes; an eventfd from older daemons); returns it
 * (watch it for POLLIN; never close it, it belongs to the connection).  When it becomes
 * readable, or on any other reason to look, call pinfer_next(c, ev, 0)
 * until it returns -EAGAIN (that also clears the eventfd) — every wake is a
 * hint.  Call it again before each sleep.  Daemon death does not make the
 * eventfd readable: watch pinfer_fd() too.  Returns the descriptor (>= 0),
 * -EAGAIN (completions are already waiting: read them), -ENOTSUP (the
 * daemon speaks protocol v1, which has no eventfd), -ECONNRESET.
 */
int pinfer_wait_fd(struct pinfer *c);

/* How pinfer_next sleeps on this connection: "io_uring futex", "io_uring
 * eventfd", "eventfd" or "futex".  Cannot fail. */
const char *pinfer_wait_method(const struct pinfer *c);

/*
 * Reconnect after the daemon went away (-ECONNRESET), to the same socket,
 * and reattach every request it suspended (PINFER_EVENT_SUSPENDED) — pinferd
 * saved them on its drain and restored them when it restarted.  Their
 * events continue under the same tags: the daemon resends exactly the
 * tokens generated after the last one this connection received, and with
 * greedy sampling or a seed the whole text equals an uninterrupted run's.
 * Requests that were not suspended (the daemon crashed) are forgotten;
 * resubmit them.  The reconnecting process must have the same uid.
 * Returns the number of requests reattached (>= 0), -EISCONN when the
 * daemon has not gone away, or what pinfer_connect returns while no new
 * daemon accepts yet (-ENOENT, -ECONNREFUSED, -ESHUTDOWN while the old one
 * still drains, ...): retry later.  On failure c stays as it was.
 */
int pinfer_reconnect(struct pinfer *c);

/* Requests waiting for pinfer_reconnect (suspended by a drain).  Cannot fail. */
uint32_t pinfer_suspended(const struct pinfer *c);

/* The registration socket: readable (EOF) or POLLHUP once the daemon is
 * gone.  Only poll it; never read or write it.  Cannot fail. */
int pinfer_fd(const struct pinfer *c);

/*
 * Register as a statistics reader (what pinfer-top and pinfer-exporter do):
 * returns a read-only descriptor of the daemon's stats segment — layout
 * struct pf_stats in <pinfer/stats.h> (installed beside this header;
 * shm/stats.h in the source tree), read consistently with pf_stats_read() —
 * or a negative errno with a message in opts->err.  Anyone allowed to
 * connect may read the stats.  The descriptor stays valid while pinferd
 * runs; map it with PROT_READ.
 */
int pinfer_stats_open(const struct pinfer_connect_opts *opts);

/* Name of a finish reason ("stop", "length", "cancelled", "error",
 * "deadline", "stalled", "unknown").  Cannot fail. */
const char *pinfer_finish_reason_str(enum pinfer_finish_reason r);

/* ---- convenience ---------------------------------------------------------------------- */

/* Called for each event of the request; return 0 to go on, non-zero to
 * cancel it (events keep coming until the final FINISHED). */
typedef int (*pinfer_event_cb)(void *ctx, const struct pinfer_event *ev);

/*
 * Deliver every event of request `tag` to cb (events of other tags on c are
 * delivered too; check ev->tag) until its last event.  pinfer_interrupt()
 * (say from a SIGINT handler) cancels the request, and the remaining events
 * are still delivered; one that comes as the request ends is dropped with
 * it.  Any other signal that breaks the wait — a stop and
 * continue (Ctrl-Z, fg) does, with io_uring — is not a cancellation: the
 * stream goes on.  Returns 0 when
 * the request ended normally (FINISHED, any reason), -error (positive errno
 * from the daemon negated) after an ERROR event, -EINTR when it ended after
 * an interrupt, -ECANCELED when it ended after cb asked to cancel, -ENOENT
 * (tag not in flight), or a negative errno of pinfer_next/pinfer_cancel.
 */
int pinfer_stream(struct pinfer *c, uint64_t tag, pinfer_event_cb cb, void *ctx);

/* Submit text (NUL-terminated) and pinfer_stream it to cb.  Returns what
 * pinfer_submit_text or pinfer_stream returns. */
int pinfer_generate(struct pinfer *c, const char *text, const struct pinfer_params *params, pinfer_event_cb cb,
		    void *ctx);

/* As pinfer_generate with a conversation (see pinfer_submit_chat). */
int pinfer_generate_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n,
			 const struct pinfer_params *params, pinfer_event_cb cb, void *ctx);

#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
