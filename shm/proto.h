/*
 * proto.h — the shared-memory protocol between pinferd and its clients.
 *
 * Both sides compile this header; nothing here knows about models.
 *
 * Registration (unix stream socket, see pf_shm_socket_path()):
 *   client → daemon   struct pf_hello
 *   daemon → client   struct pf_welcome + SCM_RIGHTS { c2d memfd, d2c memfd, wake fd }
 *                     (the wake fd from protocol v2 on; v1 clients get two):
 *                     read end of a pipe only the daemon writes (an eventfd
 *                     from older daemons; clients treat both alike)
 * The socket then stays open and carries nothing; its closing (or the
 * client's pidfd becoming readable) is how the daemon learns the client left.
 *
 * Per client two segments, created and sized by the daemon, sealed against
 * shrink/grow so a client can never SIGBUS the daemon:
 *
 *   c2d (client writes, daemon reads):  [struct pf_c2d_hdr][SQ entries][payload bytes]
 *   d2c (daemon writes, client reads):  [struct pf_d2c_hdr][CQ entries]
 *                                       (sealed F_SEAL_FUTURE_WRITE: read-only for the client)
 *
 * Every word has exactly one writer.  Rings are single-producer /
 * single-consumer with power-of-two sizes and free-running 32-bit indices
 * (masked on access); producer and consumer indices live on separate cache
 * lines and in the segment their writer owns:
 *
 *   SQ: producer client (c2d.sq_tail), consumer daemon (d2c.sq_head)
 *   CQ: producer daemon (d2c.cq_tail), consumer client (c2d.cq_head)
 *
 * Payloads: a SUBMIT's prompt (text, token ids or chat messages) and stop
 * strings/ids lie in the c2d payload area at [payload_off, +payload_len);
 * the client may reuse those bytes once d2c.sq_head has passed the entry
 * (the daemon copies them out when it consumes the entry).
 *
 * Untrusted input: the daemon reads sq_tail once per poll, clamps tail-head
 * to the ring size, copies each entry into private memory and validates the
 * copy; it never re-reads shared memory after validating.
 *
 * Wake-ups (every wake is a hint; always re-check the ring):
 *   - completions: the client spins, then sets c2d.cq_waiting, re-checks
 *     d2c.cq_tail (seq_cst fence between: Dekker) and sleeps.  The daemon,
 *     after publishing cq_tail, bumps cq_seq and wakes only if cq_waiting
 *     is set — how depends on its bits: PF_WAIT_FUTEX, a FUTEX_WAKE on
 *     d2c.cq_seq (the client sleeps in FUTEX_WAIT, directly or through
 *     io_uring); PF_WAIT_EVENTFD (v2), a write to the session's eventfd (the
 *     client polls it: through io_uring on kernels without io_uring futex
 *     operations, or in the application's own epoll loop).  The daemon
 *     batches a step's wakes into one io_uring_enter where it can.
 *   - submissions: the daemon polls SQ tails every step.  When idle it sets
 *     d2c.daemon_sleeping, re-checks every SQ, and futex-waits on the
 *     clients' c2d.sq_seq words (FUTEX_WAITV); a client that sees
 *     daemon_sleeping after publishing sq_tail bumps its sq_seq and wakes.
 *
 * Versioning: pf_hello carries the protocol version and the layout sizes
 * the client was built with; the daemon accepts its own version and the one
 * before it, and answers anything else with a clear error in pf_welcome.
 */
#ifndef PF_SHM_PROTO_H
#define PF_SHM_PROTO_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PF_PROTO_MAGIC 0x50494e46u /* "PINF" */
/* v2: a wake eventfd in the welcome, PF_WAIT_EVENTFD in cq_waiting,
 * SUSPENDED completions and RESUME submissions (drain and restart)
 * v3: TOKENIZE and DETOKENIZE submissions, IDS and TEXT completions (the
 * daemon's tokenizer for clients that have none, e.g. pinfer-server) */
#define PF_PROTO_VERSION 3
#define PF_PROTO_MIN_VERSION 1     /* oldest client version this build serves */

#define PF_SQ_DEFAULT 64           /* entries */
#define PF_CQ_DEFAULT 1024
#define PF_PAYLOAD_DEFAULT (1u << 20)
#define PF_SQ_MAX 4096
#define PF_CQ_MAX 65536
#define PF_PAYLOAD_MAX (64u << 20)

#define PF_CACHELINE 64

/* ---- handshake ------------------------------------------------------------ */

struct pf_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t flags;
	uint32_t sizeof_sqe, sizeof_cqe, sizeof_c2d_hdr, sizeof_d2c_hdr;
	uint32_t sq_entries, cq_entries; /* requested (0: default); powers of two */
	uint32_t payload_bytes;          /* requested (0: default) */
	uint32_t reserved[5];
};
static_assert(sizeof(struct pf_hello) == 56, "pf_hello layout");

enum pf_welcome_status {
	PF_WELCOME_OK = 0,
	PF_WELCOME_VERSION = 1,   /* protocol version or layout mismatch */
	PF_WELCOME_DENIED = 2,    /* not on the allow list */
	PF_WELCOME_FULL = 3,      /* too many clients */
	PF_WELCOME_DRAINING = 4,  /* the daemon is shutting down */
	PF_WELCOME_INVALID = 5,   /* malformed hello */
	PF_WELCOME_ERROR = 6,     /* daemon-side failure */
};

struct pf_welcome {
	uint32_t magic;
	uint16_t version;         /* the version the daemon speaks to this client */
	uint16_t status;          /* enum pf_welcome_status */
	uint32_t sq_entries, cq_entries, payload_bytes;
	uint32_t c2d_bytes, d2c_bytes;
	uint64_t client_id;
	int32_t n_vocab;
	int32_t max_model_len;
	int32_t bos, eos;
	uint32_t max_inflight;    /* quota: requests in flight */
	uint32_t reserved;
	char model[96];           /* NUL-terminated */
	char message[160];        /* NUL-terminated; why, when status != OK */
};
static_assert(sizeof(struct pf_welcome) == 320, "pf_welcome layout");

/* ---- segment headers -------------------------------------------------------- */

struct pf_c2d_hdr {
	uint32_t magic;
	uint32_t version;
	uint8_t pad0[PF_CACHELINE - 8];
	_Alignas(PF_CACHELINE) _Atomic uint32_t sq_tail;   /* client: SQ producer index */
	uint8_t pad1[PF_CACHELINE - 4];
	_Alignas(PF_CACHELINE) _Atomic uint32_t cq_head;   /* client: CQ consumer index */
	uint8_t pad2[PF_CACHELINE - 4];
	_Alignas(PF_CACHELINE) _Atomic uint32_t cq_waiting; /* client: enum pf_wait_how bits while it sleeps */
	_Atomic uint32_t sq_seq;                            /* client: futex word bumped to wake the daemon */
	uint8_t pad3[PF_CACHELINE - 8];
};
static_assert(sizeof(struct pf_c2d_hdr) == 4 * PF_CACHELINE, "pf_c2d_hdr layout");
static_assert(offsetof(struct pf_c2d_hdr, sq_tail) == 64, "pf_c2d_hdr layout");
static_assert(offsetof(struct pf_c2d_hdr, cq_head) == 128, "pf_c2d_hdr layout");
static_assert(offsetof(struct pf_c2d_hdr, cq_waiting) == 192, "pf_c2d_hdr layout");

/* How a sleeping client wants to be woken (bits of c2d.cq_waiting). */
enum pf_wait_how {
	PF_WAIT_FUTEX = 1 << 0,   /* FUTEX_WAKE on d2c.cq_seq */
	PF_WAIT_EVENTFD = 1 << 1, /* write 1 to the session's eventfd (v2) */
};

enum pf_daemon_state { PF_DAEMON_SERVING = 0, PF_DAEMON_DRAINING = 1, PF_DAEMON_GONE = 2 };

struct pf_d2c_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t sq_entries, cq_entries;
	uint32_t payload_bytes;
	_Atomic uint32_t daemon_state;                     /* enum pf_daemon_state */
	uint8_t pad0[PF_CACHELINE - 24];
	_Alignas(PF_CACHELINE) _Atomic uint32_t cq_tail;   /* daemon: CQ producer index */
	uint8_t pad1[PF_CACHELINE - 4];
	_Alignas(PF_CACHELINE) _Atomic uint32_t sq_head;   /* daemon: SQ consumer index */
	uint8_t pad2[PF_CACHELINE - 4];
	_Alignas(PF_CACHELINE) _Atomic uint32_t cq_seq;    /* daemon: futex word, bumped after posting */
	_Atomic uint32_t daemon_sleeping;                  /* daemon: 1 while it may sleep on sq_seq */
	uint8_t pad3[PF_CACHELINE - 8];
};
static_assert(sizeof(struct pf_d2c_hdr) == 4 * PF_CACHELINE, "pf_d2c_hdr layout");
static_assert(offsetof(struct pf_d2c_hdr, cq_tail) == 64, "pf_d2c_hdr layout");
static_assert(offsetof(struct pf_d2c_hdr, sq_head) == 128, "pf_d2c_hdr layout");

/* ---- wire limits ------------------------------------------------------------ */
/*
 * What one request may carry, defined once.  The public header repeats them
 * as PINFER_MAX_* (it must stand alone when installed) and client/submit.c
 * ties the two with static_assert; the sampler's limits are these
 * (runtime/engine/sampler.h), the engine's MAX_N is PF_WIRE_MAX_SEQS, and
 * the daemon's entry decoder (daemon_sqe.c) checks against them.
 */
#define PF_WIRE_MAX_SEQS 16         /* n: completions per request; resume's sequences */
#define PF_WIRE_MAX_BEAMS 8         /* beam_width */
#define PF_WIRE_MAX_STOP 8          /* stop strings per request */
#define PF_WIRE_MAX_STOP_LEN 64     /* bytes per stop string */
#define PF_WIRE_MAX_STOP_IDS 16     /* stop token ids per request */
#define PF_WIRE_MAX_TOP_LOGPROBS 20 /* alternatives per token (OpenAI's limit) */

/* ---- submission entries ----------------------------------------------------- */

/*
 * RESUME (v2): reattach to a request the daemon suspended (wrote to its state
 * file on drain) and resumed after a restart.  tag: the client's tag for it
 * from now on; payload: struct pf_resume_payload.  The daemon replays the
 * request's tokens after the ones the client says it has.
 */
/*
 * TOKENIZE (v3): input TEXT (flags ADD_SPECIAL, PARSE_SPECIAL as for SUBMIT)
 * or CHAT (rendered with the chat template, as SUBMIT would); the answer is
 * the prompt's token ids in IDS completions.  DETOKENIZE (v3): input TOKENS;
 * the answer is their text, as generation would stream it (well-formed
 * UTF-8; control tokens rendered only with PARSE_SPECIAL), in TEXT
 * completions.  Sampling fields are ignored; neither takes a KV block.
 */
enum pf_sq_op { PF_OP_SUBMIT = 1, PF_OP_CANCEL = 2, PF_OP_RESUME = 3, PF_OP_TOKENIZE = 4, PF_OP_DETOKENIZE = 5 };

#define PF_RESUME_MAX_SEQS PF_WIRE_MAX_SEQS

struct pf_resume_payload {
	uint8_t token[16];        /* from the SUSPENDED completion */
	uint32_t n_seqs;          /* entries of received[] that are used */
	uint32_t received[PF_RESUME_MAX_SEQS]; /* tokens the client has of sequence i */
};
static_assert(sizeof(struct pf_resume_payload) == 84, "pf_resume_payload layout");

enum pf_input_kind {
	PF_INPUT_TEXT = 1,    /* payload: UTF-8 prompt */
	PF_INPUT_TOKENS = 2,  /* payload: int32 token ids */
	PF_INPUT_CHAT = 3,    /* payload: u32 n, then n × { u32 role_len, role, u32 content_len, content } */
};

enum pf_sqe_flags {
	PF_SQE_ADD_SPECIAL = 1 << 0,    /* add BOS/EOS as the model does (TEXT) */
	PF_SQE_PARSE_SPECIAL = 1 << 1,  /* recognise special-token text (TEXT) */
	PF_SQE_IGNORE_EOS = 1 << 2,
	PF_SQE_LOGPROBS = 1 << 3,
	PF_SQE_HAS_SEED = 1 << 4,
	PF_SQE_NO_TEXT = 1 << 5,        /* token ids only, no detokenized text */
};

/*
 * One submission, 128 bytes.  SUBMIT: every field.  CANCEL: op and tag (the
 * tag of the request to cancel).  Stop strings: at [stop_off, +stop_len) in
 * the payload area as n × { u8 len, bytes }; stop ids: n_stop_ids int32 at
 * stop_ids_off.
 */
struct pf_sqe {
	uint8_t op;               /* enum pf_sq_op */
	uint8_t input;            /* enum pf_input_kind */
	uint16_t flags;           /* enum pf_sqe_flags */
	uint32_t payload_len;
	uint32_t payload_off;
	uint32_t deadline_ms;     /* 0: none; else cancel with FINISH_DEADLINE after this long */
	uint64_t tag;             /* client's id for the request; echoed in completions */
	uint64_t seed;
	float temperature, top_p, min_p, repetition_penalty;
	float presence_penalty, frequency_penalty, length_penalty;
	int32_t top_k, max_tokens, min_tokens, n, beam_width, priority, top_logprobs;
	uint32_t stop_off, stop_len, stop_ids_off, n_stop_ids;
	uint8_t reserved[24];
};
static_assert(sizeof(struct pf_sqe) == 128, "pf_sqe layout");

/* ---- completion entries ------------------------------------------------------- */

enum pf_cq_kind {
	PF_CQ_TOKENS = 1,   /* one token and (part of) the text it completes */
	PF_CQ_FINISHED = 2, /* a sequence (index) of the request ended */
	PF_CQ_ERROR = 3,    /* the request failed: code + message; no FINISHED follows */
	PF_CQ_LOGPROBS = 4, /* up to 8 top alternatives of the last TOKENS entry */
	PF_CQ_SUSPENDED = 5,/* v2: the daemon is stopping and saved the request; reattach with
			     * RESUME and u.sus.token after it restarts.  Nothing else
			     * follows for the tag on this connection. */
	PF_CQ_IDS = 6,      /* v3: token ids answering TOKENIZE (u.ids); MORE: more follow;
			     * the final entry has LAST */
	PF_CQ_TEXT = 7,     /* v3: text answering DETOKENIZE (u.tok.text, text_len); MORE:
			     * more follows; the final entry has LAST */
};

enum pf_cqe_flags {
	PF_CQE_MORE = 1 << 0, /* TOKENS/FINISHED: text continues in the next entry of this index */
	PF_CQE_LAST = 1 << 1, /* FINISHED: the request's last sequence ended */
};

enum pf_finish {
	PF_FINISHED_STOP = 0,
	PF_FINISHED_LENGTH = 1,
	PF_FINISHED_CANCELLED = 2,
	PF_FINISHED_ERROR = 3,
	PF_FINISHED_DEADLINE = 4,
	PF_FINISHED_STALLED = 5, /* the client did not read its completions for --stall-timeout */
};

#define PF_CQE_TEXT 80
#define PF_CQE_IDS 27

struct pf_cqe {
	uint8_t kind;             /* enum pf_cq_kind */
	uint8_t index;            /* sequence index (n > 1) or beam rank */
	uint16_t flags;           /* enum pf_cqe_flags */
	uint16_t text_len;
	uint16_t reserved0;
	uint64_t tag;
	union {
		struct {
			int32_t token;    /* -1 on a text-only continuation entry */
			float logprob;    /* NAN unless requested */
			uint8_t text[PF_CQE_TEXT];
			uint8_t pad[24];
		} tok;
		struct {
			uint8_t reason;   /* enum pf_finish */
			uint8_t pad[3];
			int32_t prompt_tokens, cached_tokens, generated_tokens;
			float queue_s, ttft_s, decode_s, beam_score;
			uint8_t text[PF_CQE_TEXT];
		} fin;
		struct {
			int32_t code;     /* positive errno */
			char message[108];/* NUL-terminated */
		} err;
		struct {
			uint32_t n;
			int32_t token[8];
			float logprob[8];
			uint8_t pad[44];
		} lp;
		struct {
			uint8_t token[16];
		} sus;
		struct {
			uint32_t n;       /* ids used, <= PF_CQE_IDS */
			int32_t id[PF_CQE_IDS];
		} ids;
	} u;
};
static_assert(sizeof(struct pf_cqe) == 128, "pf_cqe layout");

/* ---- segment sizes -------------------------------------------------------------- */

static inline uint64_t pf_c2d_bytes(uint32_t sq_entries, uint32_t payload_bytes)
{
	return sizeof(struct pf_c2d_hdr) + (uint64_t)sq_entries * sizeof(struct pf_sqe) + payload_bytes;
}

static inline uint64_t pf_d2c_bytes(uint32_t cq_entries)
{
	return sizeof(struct pf_d2c_hdr) + (uint64_t)cq_entries * sizeof(struct pf_cqe);
}

#endif
