/*
 * uring.h — the io_uring pieces pinferd and libpinfer share: finding out
 * whether io_uring can be used here, and filling futex SQEs by hand.
 *
 * io_uring is often unavailable even on new kernels: container runtimes'
 * seccomp profiles block io_uring_setup, `kernel.io_uring_disabled` turns it
 * off, and kernels before 6.7 lack IORING_OP_FUTEX_WAIT/WAKE.  Both sides
 * therefore probe once at start and fall back to plain futex/eventfd and
 * poll(2); the environment variable PINFER_NO_IO_URING=1 forces the fallback
 * (CI runs the integration suites that way too).
 *
 * Debian 12's liburing 2.3 and <linux/io_uring.h> predate the futex
 * opcodes, so their SQEs are filled by hand.  Field mapping from the
 * kernel's io_uring/futex.c (io_futex_prep): addr = futex word, addr2 =
 * expected value (WAIT) or number of waiters to wake (WAKE), addr3 = bitset
 * mask, fd = FUTEX2_* flags; len, buf_index, file_index and the op-flags
 * word must be 0.  No FUTEX2_PRIVATE: our words are shared across
 * processes.
 */
#ifndef PF_SHM_URING_H
#define PF_SHM_URING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PF_IORING_OP_FUTEX_WAIT 51
#define PF_IORING_OP_FUTEX_WAKE 52
#define PF_FUTEX2_SIZE_U32 0x02
#define PF_FUTEX_BITSET_MATCH_ANY 0xffffffffu

struct io_uring_sqe;

/* What io_uring offers in this process. */
struct pf_uring_caps {
	bool usable;      /* io_uring_setup works and has what we rely on (CQE skip, multishot poll) */
	bool futex;       /* IORING_OP_FUTEX_WAIT and _WAKE (Linux >= 6.7) */
	char why[160];    /* when !usable or !futex: the reason, for the log */
};

/* Probe io_uring (creates and destroys a small ring).  Honours
 * PINFER_NO_IO_URING.  Cannot fail: problems show up as usable = false. */
void pf_uring_probe(struct pf_uring_caps *ret);

/* Fill sqe (every field) with a FUTEX_WAIT on *word while it equals val. */
void pf_uring_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t val);

/* Fill sqe (every field) with a FUTEX_WAKE of up to n waiters on *word. */
void pf_uring_prep_futex_wake(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t n);

#endif
