/*
 * ring.h — single-producer / single-consumer ring index arithmetic.
 *
 * Indices are free-running uint32 counters; entry i lives at slot
 * i & (size - 1).  Only the producer writes the tail and only the consumer
 * writes the head, each in the segment its writer owns (see proto.h), so
 * the rings need no locks and no CAS.  The orders below are the whole
 * synchronisation; each names the operation it pairs with.
 */
#ifndef PF_SHM_RING_H
#define PF_SHM_RING_H

#include <stdatomic.h>
#include <stdint.h>

/* Producer: free slots, given its own tail and the consumer's head. */
static inline uint32_t pf_ring_free(uint32_t size, uint32_t tail, _Atomic uint32_t *head)
{
	/* acquire: pairs with the consumer's release store of head, so the slots
	 * it freed are no longer being read when we overwrite them */
	uint32_t h = atomic_load_explicit(head, memory_order_acquire);
	uint32_t used = tail - h;
	return used > size ? 0 : size - used; /* a hostile head reads as "full" */
}

/* Producer: make entries before `new_tail` visible. */
static inline void pf_ring_publish(_Atomic uint32_t *tail, uint32_t new_tail)
{
	/* release: pairs with the consumer's acquire load of tail in
	 * pf_ring_avail, so the entries' bytes are visible before the index */
	atomic_store_explicit(tail, new_tail, memory_order_release);
}

/* Consumer: entries ready, given its own head; clamped to the ring size so a
 * hostile producer's tail can never make us read more than one lap. */
static inline uint32_t pf_ring_avail(uint32_t size, uint32_t head, _Atomic uint32_t *tail)
{
	/* acquire: pairs with the producer's release store in pf_ring_publish */
	uint32_t t = atomic_load_explicit(tail, memory_order_acquire);
	uint32_t n = t - head;
	return n > size ? size : n;
}

/* Consumer: release the slots before `new_head` to the producer. */
static inline void pf_ring_consume(_Atomic uint32_t *head, uint32_t new_head)
{
	/* release: pairs with the producer's acquire load of head in pf_ring_free,
	 * so our reads of the slots finish before the producer reuses them */
	atomic_store_explicit(head, new_head, memory_order_release);
}

#endif
