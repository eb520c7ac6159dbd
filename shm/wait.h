/*
 * wait.h — futex waits and wakes on words in shared memory.
 *
 * The words live in memfd mappings shared between processes, so these are
 * the non-private futex operations.  Every wake is a hint: callers always
 * re-check the ring after waking.
 */
#ifndef PF_SHM_WAIT_H
#define PF_SHM_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

/* Sleep while *word == val, at most timeout_ns (< 0: no limit).  Returns 0
 * when woken or the value differed, -ETIMEDOUT, -EINTR. */
int pf_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns);

/* Wake up to n sleepers of *word.  Returns the number woken or -errno. */
int pf_futex_wake(_Atomic uint32_t *word, int n);

/* Sleep until any words[i] != vals[i] (FUTEX_WAITV, Linux ≥ 5.16), at most
 * timeout_ns.  Returns 0 or the index woken, -ETIMEDOUT, -EINTR, -ENOSYS
 * when the kernel lacks it, -EAGAIN when a value already differed. */
int pf_futex_waitv(_Atomic uint32_t *const *words, const uint32_t *vals, int n, int64_t timeout_ns);

#endif
