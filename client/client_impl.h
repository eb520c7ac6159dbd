/*
 * client_impl.h — libpinfer's private state, shared by the client/ sources.  Not
 * installed; the only header applications see is pinfer.h.
 *
 * Indices we own (c2d.sq_tail, c2d.cq_head) are kept in private copies and
 * only stored to shared memory; indices the daemon owns (d2c.sq_head,
 * d2c.cq_tail) are loaded through the ring helpers, which clamp hostile
 * values.
 *
 * Payload area allocator: a byte ring over [0, payload_n) with 64-bit
 * free-running counters pay_head <= pay_tail (no wrap in practice).  Each
 * submission takes one contiguous chunk (prompt, stop ids, stop strings);
 * a chunk that would straddle the end of the area starts at the next lap and
 * the skipped tail bytes count as used until the chunk before them is
 * released.  slot_end[i] remembers pay_tail after the entry in SQ slot i, so
 * when d2c.sq_head passes an entry everything up to its slot_end is free
 * (the daemon copies payloads out when it consumes the entry).
 *
 * Reassembly: text longer than one completion entry arrives as entries with
 * PF_CQE_MORE for the same (tag, index), the final one without MORE and of
 * the event's real kind.  Each open chain is a struct pf_partial; chains of
 * different (tag, index) may interleave.  Text per chain is capped at
 * PF_CLIENT_TEXT_MAX bytes (beyond: dropped, event marked truncated).
 */
#ifndef PF_CLIENT_IMPL_H
#define PF_CLIENT_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/pinfer.h"
#include "shm/proto.h"

#define PF_CLIENT_TEXT_MAX (1u << 20)   /* bytes of text per event */
#define PF_CLIENT_MAX_PARTIALS 1024     /* open chains; more is a protocol error */
#define PF_CLIENT_SPINS 2000            /* pause iterations before sleeping (PINFER_SPINS overrides) */
#define PF_CLIENT_SLICE_MS 100          /* futex sleep between liveness checks */

/* How pinfer_next sleeps (chosen at connect; see events.c). */
enum pf_client_wait {
	PF_CW_FUTEX = 0,         /* futex(2) on d2c.cq_seq */
	PF_CW_URING_FUTEX = 1,   /* IORING_OP_FUTEX_WAIT on d2c.cq_seq, linked to a timeout */
	PF_CW_URING_EVENTFD = 2, /* IORING_OP_POLL_ADD on the wake eventfd, linked to a timeout */
	PF_CW_POLL_EVENTFD = 3,  /* poll(2) on the wake eventfd */
};

struct io_uring;

/* A request in flight, as far as resuming it needs: the tokens received per
 * sequence and, once the daemon suspended it on a drain, its resume token. */
struct pf_live_slot {
	uint64_t tag;                   /* 0: empty slot */
	bool suspended;
	uint8_t token[16];
	uint32_t received[PF_RESUME_MAX_SEQS];
};

struct pf_partial {
	uint64_t tag;
	uint8_t index;
	bool truncated;
	char *buf;                      /* text so far (not NUL-terminated) */
	size_t len, cap;
	uint32_t n_top;                 /* LOGPROBS alternatives so far */
	int32_t top_token[PINFER_MAX_TOP_LOGPROBS];
	float top_logprob[PINFER_MAX_TOP_LOGPROBS];
};

struct pinfer {
	int sock;
	char path[108];
	char err[256];

	/* segments */
	struct pf_c2d_hdr *c2d;         /* read-write */
	struct pf_d2c_hdr *d2c;         /* mapped PROT_READ: load only */
	size_t c2d_bytes, d2c_bytes;
	struct pf_sqe *sq;
	uint8_t *payload;
	const struct pf_cqe *cq;
	uint32_t sq_n, cq_n, payload_n;

	/* private copies of our indices, and what we last saw of the daemon's */
	uint32_t sq_tail, sq_head_seen, cq_head;
	uint64_t pay_head, pay_tail;
	uint64_t *slot_end;             /* (sq_n) */

	/* requests in flight: open-addressing set keyed by tag (0 = empty) */
	uint64_t next_tag;
	struct pf_live_slot *live;      /* (live_cap) */
	uint32_t live_cap, n_live;

	/* completion reassembly */
	struct pf_partial *partials;    /* (n_partials) of (cap_partials) */
	uint32_t n_partials, cap_partials;
	char *evbuf;                    /* text of the event last returned */
	size_t evcap;
	size_t ev_n_ids;                /* TOKENIZED: ids at evbuf (int32), else 0 */

	/* sleeping */
	int efd;                        /* wake eventfd from the daemon (v2), else -1 */
	enum pf_client_wait wait_how;
	int spins;                      /* pause iterations before sleeping */
	struct io_uring *ring;          /* private ring for sleeping, created at the first sleep */

	/* pinfer_interrupt() was called (from a signal handler: a lock-free
	 * store is all it does); the wait in progress takes it */
	atomic_int interrupt;
	bool gone;                      /* the daemon went away: sticky */
	uint32_t resume_backlog;        /* suspended requests pinfer_reconnect could not send yet */
	int64_t next_check_ns;          /* non-blocking pinfer_next: next socket check */

	/* from the welcome */
	char model[96];
	int timeout_ms;                 /* the connect options', for pinfer_reconnect */
	int32_t n_vocab, max_model_len, bos, eos;
	uint32_t max_inflight;
	uint64_t client_id;
};

/* Library-internal: never exported from libpinfer.so. */
#pragma GCC visibility push(hidden)

/* Format a message into c->err; returns r (a negative errno) for tail calls. */
__attribute__((format(printf, 3, 4))) int pf_client_fail(struct pinfer *c, int r, const char *fmt, ...);

/* The in-flight tag set.  add: 0 or -ENOMEM; remove: true if it was there. */
int pf_client_live_add(struct pinfer *c, uint64_t tag);
bool pf_client_live_remove(struct pinfer *c, uint64_t tag);
bool pf_client_live_has(const struct pinfer *c, uint64_t tag);
/* The slot of tag, or NULL; valid until the set changes. */
struct pf_live_slot *pf_client_live_get(struct pinfer *c, uint64_t tag);

/* Choose how to sleep (after the handshake): io_uring where it works,
 * honouring PINFER_NO_IO_URING and PINFER_WAIT (futex|eventfd).  Cannot fail. */
void pf_client_pick_wait(struct pinfer *c);
/* Tear down the sleeping ring, if any.  Cannot fail. */
void pf_client_ring_free(struct pinfer *c);

/* Queue a RESUME for a suspended request (on a fresh connection).
 * Returns 0 or -EAGAIN (ring or payload area full). */
int pf_client_submit_resume(struct pinfer *c, const struct pf_live_slot *slot);

/* Send RESUMEs that did not fit the ring at pinfer_reconnect.  Cannot fail
 * (what still does not fit waits for the next call). */
void pf_client_resume_backlog(struct pinfer *c);

/* Check the daemon is still there without blocking: daemon_state and the
 * socket (EOF / hang-up).  Sets c->gone and c->err.  Returns 0 or -ECONNRESET. */
int pf_client_check_alive(struct pinfer *c);

#pragma GCC visibility pop

#endif
