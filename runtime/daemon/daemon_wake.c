/*
 * daemon_wake.c — the engine thread's wake batcher (struct pf_waker in
 * daemon.h).  A step may complete tokens for dozens of sleeping clients; with
 * io_uring their FUTEX_WAKEs and eventfd writes go to the kernel in one
 * io_uring_enter instead of one syscall each.
 */
#include <errno.h>
#include <sys/uio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "shm/wait.h"

#define WAKER_ENTRIES 256

int pf_waker_init(struct pf_waker *w, const struct pf_uring_caps *caps)
{
	memset(w, 0, sizeof(*w));
	w->one = 1;
	if (!caps->usable)
		return 0;
	/* cooperative task running: no task-work interruptions of the
	 * engine thread's own sleeps */
	int r = io_uring_queue_init(WAKER_ENTRIES, &w->ring, IORING_SETUP_COOP_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(WAKER_ENTRIES, &w->ring, 0);
	if (r < 0)
		return r;
	w->uring = true;
	w->uring_futex = caps->futex;
	return 0;
}

static struct io_uring_sqe *get_sqe(struct pf_waker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		pf_waker_flush(w);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

void pf_waker_add(struct pf_waker *w, _Atomic uint32_t *futex_word, int efd)
{
	struct io_uring_sqe *sqe;
	if (futex_word) {
		if (w->uring_futex && (sqe = get_sqe(w))) {
			pf_uring_prep_futex_wake(sqe, futex_word, 1u << 30);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			w->queued++;
		} else {
			pf_futex_wake(futex_word, 1 << 30);
		}
	}
	if (efd >= 0) {
		/* efd is the write end of the session's wake pipe, an open
		 * file description only this process holds, created
		 * O_NONBLOCK: a pipe the client never drains fails the write
		 * with EAGAIN (it is readable anyway, so nothing is lost), and
		 * no client can make it blocking.  io_uring returns EAGAIN for
		 * an O_NONBLOCK file instead of parking the write. */
		if (w->uring && (sqe = get_sqe(w))) {
			io_uring_prep_write(sqe, efd, &w->one, sizeof(w->one), (uint64_t)-1);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			w->queued++;
		} else {
			ssize_t n = write(efd, &w->one, sizeof(w->one));
			(void)n;
		}
	}
}

void pf_waker_flush(struct pf_waker *w)
{
	if (!w->uring)
		return;
	if (w->queued) {
		/* futex wakes and eventfd writes complete inline, during this
		 * call; a file the engine closes afterwards is no longer needed */
		int r;
		do
			r = io_uring_submit(&w->ring);
		while (r == -EINTR);
		w->queued = 0;
	}
	/* only failures post completions: count them and move on */
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&w->ring, &cqe) == 0) {
		w->failures++;
		io_uring_cqe_seen(&w->ring, cqe);
	}
}

void pf_waker_destroy(struct pf_waker *w)
{
	if (w->uring) {
		pf_waker_flush(w);
		io_uring_queue_exit(&w->ring);
		w->uring = false;
	}
}
