/* wait.c — futex helpers; see wait.h. */
#include "shm/wait.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_32
#define FUTEX_32 2
struct futex_waitv {
	uint64_t val;
	uint64_t uaddr;
	uint32_t flags;
	uint32_t __reserved;
};
#endif

int pf_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tp = &ts;
	}
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, tp, NULL, 0);
	if (r < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int pf_futex_wake(_Atomic uint32_t *word, int n)
{
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
	return r < 0 ? -errno : (int)r;
}

int pf_futex_waitv(_Atomic uint32_t *const *words, const uint32_t *vals, int n, int64_t timeout_ns)
{
	struct futex_waitv w[128];
	struct timespec ts, *tp = NULL;
	if (n < 1 || n > 128)
		return -EINVAL;
	memset(w, 0, sizeof(w));
	for (int i = 0; i < n; i++) {
		w[i].val = vals[i];
		w[i].uaddr = (uintptr_t)words[i];
		w[i].flags = FUTEX_32;
	}
	if (timeout_ns >= 0) {
		/* futex_waitv takes an absolute CLOCK_MONOTONIC deadline */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t ns = ts.tv_nsec + timeout_ns % 1000000000;
		ts.tv_sec += timeout_ns / 1000000000 + ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		tp = &ts;
	}
	long r = syscall(SYS_futex_waitv, w, (unsigned)n, 0, tp, CLOCK_MONOTONIC);
	return r < 0 ? -errno : (int)r;
}
