/* uring.c — io_uring probing and hand-filled futex SQEs; see uring.h. */
#include "shm/uring.h"

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static_assert(sizeof(struct io_uring_sqe) == 64, "io_uring_sqe layout");

void pf_uring_probe(struct pf_uring_caps *ret)
{
	memset(ret, 0, sizeof(*ret));
	const char *env = getenv("PINFER_NO_IO_URING");
	if (env && *env && strcmp(env, "0") != 0) {
		snprintf(ret->why, sizeof(ret->why), "disabled by PINFER_NO_IO_URING=%s", env);
		return;
	}
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);
	if (r < 0) {
		snprintf(ret->why, sizeof(ret->why), "io_uring_setup failed: %s%s", strerror(-r),
			 r == -EPERM ? " (kernel.io_uring_disabled or a seccomp profile)" : "");
		return;
	}
	if (!(ring.features & IORING_FEAT_CQE_SKIP)) {
		snprintf(ret->why, sizeof(ret->why), "kernel io_uring lacks CQE skipping (needs Linux >= 5.17)");
		io_uring_queue_exit(&ring);
		return;
	}
	ret->usable = true;
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	if (p) {
		ret->futex = io_uring_opcode_supported(p, PF_IORING_OP_FUTEX_WAIT) &&
			     io_uring_opcode_supported(p, PF_IORING_OP_FUTEX_WAKE);
		io_uring_free_probe(p);
	}
	if (!ret->futex)
		snprintf(ret->why, sizeof(ret->why), "io_uring has no futex operations (needs Linux >= 6.7)");
	io_uring_queue_exit(&ring);
}

static void prep_futex(struct io_uring_sqe *sqe, uint8_t op, _Atomic uint32_t *word, uint64_t val)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = op;
	sqe->fd = PF_FUTEX2_SIZE_U32;
	sqe->addr = (uint64_t)(uintptr_t)word;
	sqe->addr2 = val;
	sqe->addr3 = PF_FUTEX_BITSET_MATCH_ANY;
}

void pf_uring_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t val)
{
	prep_futex(sqe, PF_IORING_OP_FUTEX_WAIT, word, val);
}

void pf_uring_prep_futex_wake(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t n)
{
	prep_futex(sqe, PF_IORING_OP_FUTEX_WAKE, word, n);
}
