/*
 * sample.cu — sampling on the device: greedy, temperature, top-k, top-p,
 * min-p and the chosen token's raw logprob, one thread block per row; see
 * cuda.h for the contract.
 *
 * Nothing is sorted at vocabulary size.  Every truncation keeps a prefix of
 * the row in some strict order — top-k by (logit desc, id asc), top-p by
 * (weight desc, id asc) — so each is one cut in a 64-bit composite key
 * (order-preserving float bits << 32 | ~id), all keys distinct.  The cut is
 * found by a search over the key range: each round is one pass over the row
 * counting (or, for top-p, weighing) the elements at or above 15
 * thresholds, which narrows the range 16-fold (the first two rounds of a
 * top-k search split the logit VALUE range, which lands near the k-th best
 * of a typical row at once); once at most SP_CAP elements remain in the
 * range they are gathered into shared memory, sorted there and the cut read
 * off.  The survivors are then the elements with key >= cut in both orders
 * and weight >= min_p; the draw walks them in ascending id order (a warp
 * range, then one thread's slice of it, then its elements).
 *
 * Determinism: every thread visits a fixed set of elements in a fixed order
 * and all reductions and scans have a fixed shape, so a row's result depends
 * only on the row, its parameters and n — never on the other rows.  Sums are
 * in double, as the CPU sampler's.
 *
 * The CPU emulator (tests/gpu/emu) shuffles floats only and has no atomics:
 * 32- and 64-bit values are shuffled as float bit patterns (what a native
 * shuffle does anyway) and gathers use a block scan, not atomics.
 */
#include <cstring>

#include "kernels/cuda/common.cuh"

#define SP_THREADS 512
#define SP_WARPS (SP_THREADS / 32)
#define SP_CAP 4096  /* elements one shared-memory bucket sorts */
#define SP_SPLIT 16  /* sub-ranges per search round */

struct sp_shared {
	uint64_t bucket[SP_CAP];           /* composite keys being ranked */
	double incl[SP_THREADS];           /* inclusive block scans */
	double red_s[SP_WARPS][SP_SPLIT];  /* per-warp partials */
	uint32_t red_c[SP_WARPS][SP_SPLIT];
	uint64_t thr[SP_SPLIT + 1];        /* a search round's thresholds */
	double wsum[SP_WARPS];             /* survivor mass per warp range */
	uint32_t wtot[SP_WARPS];           /* scan: warp totals */
	double wtot_d[SP_WARPS];
	/* search state */
	uint64_t lo, hi;                   /* the cut lies in [lo, hi] */
	uint32_t c_lo, c_hi;               /* elements >= lo, > hi */
	double s_hi, target;               /* mass > hi; the mass to reach */
	int have_target, round;
	uint32_t r;                        /* resolved cut: position in bucket */
	/* draw */
	int sel_warp, force, tok_thread;
	double base, dtarget;
	int32_t tok;
	/* row summary */
	float m, mn;
	uint32_t best, nf, bad;
};

/* ---- bits, keys, shuffles ------------------------------------------------ */

static __device__ __forceinline__ uint32_t sp_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static __device__ __forceinline__ float sp_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Order-preserving: a < b (floats, not NaN) iff sp_key(a) < sp_key(b).  -0
 * is taken as +0, so the two compare equal as they do for the CPU sampler
 * (and a tie between them goes to the lower id). */
static __device__ __forceinline__ uint32_t sp_key(float f)
{
	const uint32_t u = sp_bits(f == 0.0f ? 0.0f : f);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float sp_unkey(uint32_t k)
{
	return sp_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* Composite key: larger value first, then lower id first. */
static __device__ __forceinline__ uint64_t sp_ck(uint32_t key, int64_t i)
{
	return ((uint64_t)key << 32) | (uint64_t)(0xffffffffu - (uint32_t)i);
}

static __device__ __forceinline__ uint32_t sp_shfl(uint32_t v, int o)
{
	return sp_bits(__shfl_xor_sync(0xffffffffu, sp_float(v), o));
}

static __device__ __forceinline__ double sp_shfl_d(double v, int o)
{
	uint64_t b;
	memcpy(&b, &v, sizeof(b));
	const uint32_t lo = sp_shfl((uint32_t)b, o), hi = sp_shfl((uint32_t)(b >> 32), o);
	b = ((uint64_t)hi << 32) | lo;
	memcpy(&v, &b, sizeof(v));
	return v;
}

/* Butterfly sums: every lane ends with the same value (a + b == b + a). */
static __device__ __forceinline__ double sp_warp_sum_d(double v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += sp_shfl_d(v, o);
	return v;
}

static __device__ __forceinline__ uint32_t sp_warp_sum_u(uint32_t v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += sp_shfl(v, o);
	return v;
}

static __device__ __forceinline__ uint32_t sp_warp_max_u(uint32_t v)
{
	for (int o = 16; o > 0; o >>= 1) {
		const uint32_t w = sp_shfl(v, o);
		v = w > v ? w : v;
	}
	return v;
}

/* Block sums and max: every thread gets the result (warps in fixed order). */
static __device__ double sp_block_sum_d(sp_shared &sh, double v)
{
	v = sp_warp_sum_d(v);
	if ((threadIdx.x & 31) == 0)
		sh.wtot_d[threadIdx.x >> 5] = v;
	__syncthreads();
	double t = 0.0;
	for (int w = 0; w < SP_WARPS; w++)
		t += sh.wtot_d[w];
	__syncthreads();
	return t;
}

/* Block sum (max = false) or max of unsigned values. */
static __device__ uint32_t sp_block_u(sp_shared &sh, uint32_t v, bool max)
{
	v = max ? sp_warp_max_u(v) : sp_warp_sum_u(v);
	if ((threadIdx.x & 31) == 0)
		sh.wtot[threadIdx.x >> 5] = v;
	__syncthreads();
	uint32_t t = 0;
	for (int w = 0; w < SP_WARPS; w++)
		t = max ? (sh.wtot[w] > t ? sh.wtot[w] : t) : t + sh.wtot[w];
	__syncthreads();
	return t;
}

static __device__ __forceinline__ uint32_t sp_block_sum_u(sp_shared &sh, uint32_t v)
{
	return sp_block_u(sh, v, false);
}

static __device__ __forceinline__ uint32_t sp_block_max_u(sp_shared &sh, uint32_t v)
{
	return sp_block_u(sh, v, true);
}

/* Exclusive prefix of v over the block's threads in thread order. */
static __device__ uint32_t sp_block_excl_u(sp_shared &sh, uint32_t v)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	uint32_t sum = v, pre = v; /* xor scan: pre = inclusive prefix in the lane group */
	for (int o = 1; o < 32; o <<= 1) {
		const uint32_t other = sp_shfl(sum, o);
		if (lane & o)
			pre += other;
		sum += other;
	}
	if (lane == 0)
		sh.wtot[warp] = sum;
	__syncthreads();
	uint32_t before = 0;
	for (int w = 0; w < warp; w++)
		before += sh.wtot[w];
	__syncthreads();
	return before + pre - v;
}

/* Inclusive prefix of v over the block's threads into sh.incl[]. */
static __device__ void sp_block_incl_d(sp_shared &sh, double v)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	double sum = v, pre = v;
	for (int o = 1; o < 32; o <<= 1) {
		const double other = sp_shfl_d(sum, o);
		if (lane & o)
			pre += other;
		sum += other;
	}
	if (lane == 0)
		sh.wtot_d[warp] = sum;
	__syncthreads();
	double before = 0.0;
	for (int w = 0; w < warp; w++)
		before += sh.wtot_d[w];
	sh.incl[threadIdx.x] = warp ? before + pre : pre;
	__syncthreads();
}

/* f(v, i) for this thread's elements of the row — i = tid, tid + SP_THREADS,
 * ... in that order — four loads in flight at a time. */
template <typename F> static __device__ __forceinline__ void sp_for_row(const float *__restrict__ x, int64_t n, F &&f)
{
	int64_t i = threadIdx.x;
	for (; i + 3 * SP_THREADS < n; i += 4 * SP_THREADS) {
		const float v0 = x[i], v1 = x[i + SP_THREADS], v2 = x[i + 2 * SP_THREADS], v3 = x[i + 3 * SP_THREADS];
		f(v0, i);
		f(v1, i + SP_THREADS);
		f(v2, i + 2 * SP_THREADS);
		f(v3, i + 3 * SP_THREADS);
	}
	for (; i < n; i += SP_THREADS)
		f(x[i], i);
}

/* ---- the row's distribution ------------------------------------------------ */

struct sp_row {
	float m, mn;       /* largest and smallest finite logit */
	float inv_t;       /* 1 / temperature, as the CPU sampler computes it */
	float min_p;       /* 0 when off */
	uint64_t kcut;     /* top-k: keep composite logit keys >= kcut (0: all) */
	uint64_t pcut;     /* top-p: keep composite weight keys >= pcut (0: all) */
};

/* The CPU sampler's weight exp((l - max) / T), rounded the same way. */
static __device__ __forceinline__ float sp_w(const sp_row &r, float v)
{
	return expf(__fmul_rn(__fsub_rn(v, r.m), r.inv_t));
}

static __device__ __forceinline__ bool sp_in_k(const sp_row &r, float v, int64_t i)
{
	return v > -INFINITY && sp_ck(sp_key(v), i) >= r.kcut;
}

/* Weight of element i if it survives truncation, else 0. */
static __device__ __forceinline__ float sp_surv_w(const sp_row &r, float v, int64_t i)
{
	if (!sp_in_k(r, v, i))
		return 0.0f;
	const float w = sp_w(r, v);
	if (sp_ck(sp_key(w), i) < r.pcut || w < r.min_p)
		return 0.0f;
	return w;
}

/*
 * The cut of one truncation: the composite key of the last element kept.
 * MASS = false: top-k over the finite logits (nbase of them, k < nbase).
 * MASS = true: top-p over the top-k set (nbase elements): the shortest
 * prefix by weight whose mass reaches top_p times the set's mass.
 */
template <bool MASS>
static __device__ uint64_t sp_search(sp_shared &sh, const float *__restrict__ x, int64_t n, const sp_row &r,
				     uint32_t nbase, uint32_t k, float top_p)
{
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	__syncthreads(); /* every thread is done with the previous search's shared state */
	/* the element's key in this search, or 0 (below every range) when it
	 * takes no part */
	auto key_of = [&](float v, int64_t i, float &w) -> uint64_t {
		if (!(v > -INFINITY))
			return 0;
		if (!MASS)
			return sp_ck(sp_key(v), i);
		if (sp_ck(sp_key(v), i) < r.kcut)
			return 0;
		w = sp_w(r, v);
		return sp_ck(sp_key(w), i);
	};

	if (tid == 0) {
		if (MASS) {
			sh.lo = (uint64_t)sp_key(0.0f) << 32;
			sh.hi = ((uint64_t)sp_key(1.0f) << 32) | 0xffffffffu;
		} else {
			sh.lo = (uint64_t)sp_key(r.mn) << 32;
			sh.hi = ((uint64_t)sp_key(r.m) << 32) | 0xffffffffu;
		}
		sh.c_lo = nbase;
		sh.c_hi = 0;
		sh.s_hi = 0.0;
		sh.have_target = 0;
		sh.round = 0;
	}
	__syncthreads();

	/* Narrow [lo, hi] until the elements in it fit the bucket.  Keys are
	 * distinct, so this ends (at worst with one element). */
	while (sh.c_lo - sh.c_hi > SP_CAP) {
		if (tid == 0) {
			const uint64_t lo = sh.lo, hi = sh.hi, span = hi - lo;
			/* Logits of a real row are dense in value, not in key: split
			 * the value range first. */
			const bool by_value = !MASS && sh.round < 2 && (lo >> 32) != (hi >> 32);
			const float a = sp_unkey((uint32_t)(lo >> 32)), b = sp_unkey((uint32_t)(hi >> 32));
			uint64_t prev = lo;
			sh.thr[0] = lo;
			for (int j = 1; j < SP_SPLIT; j++) {
				uint64_t t;
				if (by_value) {
					const float f = (float)j / SP_SPLIT;
					t = (uint64_t)sp_key(a * (1.0f - f) + b * f) << 32;
				} else {
					t = lo + span / SP_SPLIT * (uint64_t)j + span % SP_SPLIT * (uint64_t)j / SP_SPLIT;
				}
				t = t <= prev ? prev + 1 : t;
				t = t > hi ? hi : t;
				sh.thr[j] = prev = t;
			}
			sh.thr[SP_SPLIT] = hi + 1;
		}
		__syncthreads();
		uint64_t t[SP_SPLIT];
		uint32_t c[SP_SPLIT];
		double s[SP_SPLIT];
#pragma unroll
		for (int j = 0; j < SP_SPLIT; j++) {
			t[j] = sh.thr[j];
			c[j] = 0;
			s[j] = 0.0;
		}
		sp_for_row(x, n, [&](float v, int64_t i) {
			float w = 0.0f;
			const uint64_t key = key_of(v, i, w);
			if (key < t[0])
				return;
#pragma unroll
			for (int j = 0; j < SP_SPLIT; j++) {
				const bool ge = key >= t[j];
				c[j] += ge;
				if (MASS)
					s[j] += ge ? (double)w : 0.0;
			}
		});
#pragma unroll
		for (int j = 0; j < SP_SPLIT; j++) {
			const uint32_t cj = sp_warp_sum_u(c[j]);
			const double sj = MASS ? sp_warp_sum_d(s[j]) : 0.0;
			if (lane == 0) {
				sh.red_c[warp][j] = cj;
				sh.red_s[warp][j] = sj;
			}
		}
		__syncthreads();
		if (tid == 0) {
			uint32_t tc[SP_SPLIT];
			double ts[SP_SPLIT];
			for (int j = 0; j < SP_SPLIT; j++) {
				tc[j] = 0;
				ts[j] = 0.0;
				for (int w = 0; w < SP_WARPS; w++) {
					tc[j] += sh.red_c[w][j];
					ts[j] += sh.red_s[w][j];
				}
			}
			if (MASS && !sh.have_target) {
				/* round 0 weighs the whole set */
				sh.target = (double)top_p * ts[0];
				sh.have_target = 1;
			}
			/* the highest threshold that still holds the cut; j = 0
			 * always does (its count/mass is that of lo) */
			int j = SP_SPLIT - 1;
			while (j > 0 && (MASS ? !(ts[j] >= sh.target) : tc[j] < k))
				j--;
			sh.lo = sh.thr[j];
			sh.hi = sh.thr[j + 1] - 1;
			sh.c_lo = tc[j];
			if (j + 1 < SP_SPLIT) {
				sh.c_hi = tc[j + 1];
				sh.s_hi = ts[j + 1];
			}
			sh.round++;
		}
		__syncthreads();
	}

	/* Gather the range into the bucket: count, scan, write. */
	const uint64_t lo = sh.lo, hi = sh.hi;
	uint32_t mine = 0;
	sp_for_row(x, n, [&](float v, int64_t i) {
		float w = 0.0f;
		const uint64_t key = key_of(v, i, w);
		mine += key >= lo && key <= hi;
	});
	uint32_t off = sp_block_excl_u(sh, mine);
	const uint32_t nb = sp_block_sum_u(sh, mine);
	sp_for_row(x, n, [&](float v, int64_t i) {
		float w = 0.0f;
		const uint64_t key = key_of(v, i, w);
		if (key >= lo && key <= hi)
			sh.bucket[off++] = key;
	});
	/* Bitonic sort, descending, padded with 0 (below every real key). */
	uint32_t p2 = 1;
	while (p2 < nb)
		p2 <<= 1;
	for (uint32_t i = nb + tid; i < p2; i += SP_THREADS)
		sh.bucket[i] = 0;
	__syncthreads();
	for (uint32_t kk = 2; kk <= p2; kk <<= 1) {
		for (uint32_t j = kk >> 1; j > 0; j >>= 1) {
			for (uint32_t i = tid; i < p2; i += SP_THREADS) {
				const uint32_t l = i ^ j;
				if (l > i) {
					const uint64_t a = sh.bucket[i], b = sh.bucket[l];
					if ((i & kk) == 0 ? a < b : a > b) {
						sh.bucket[i] = b;
						sh.bucket[l] = a;
					}
				}
			}
			__syncthreads();
		}
	}

	if (!MASS) /* exactly k: the (k - c_hi)-th of the range */
		return sh.bucket[k - sh.c_hi - 1];

	/* Mass: the first position where (mass above the range) + (prefix of
	 * the bucket) reaches the target; thread slices of the bucket, scanned. */
	const uint32_t q = (nb + SP_THREADS - 1) / SP_THREADS;
	const uint32_t b0 = tid * q < nb ? tid * q : nb, b1 = b0 + q < nb ? b0 + q : nb;
	double own = 0.0;
	for (uint32_t e = b0; e < b1; e++)
		own += (double)sp_unkey((uint32_t)(sh.bucket[e] >> 32));
	sp_block_incl_d(sh, own);
	if (tid == 0) {
		if (!sh.have_target) /* no round ran: the bucket is the whole set */
			sh.target = (double)top_p * sh.incl[SP_THREADS - 1];
		sh.have_target = 1;
	}
	__syncthreads();
	const double s_hi = sh.s_hi, target = sh.target;
	const uint32_t before = sp_block_sum_u(sh, !(s_hi + sh.incl[tid] >= target));
	if (tid == 0)
		sh.r = nb; /* rounding left it a hair short: the whole range */
	__syncthreads();
	if ((uint32_t)tid == before) {
		double cum = s_hi + (tid ? sh.incl[tid - 1] : 0.0);
		uint32_t e = b0;
		for (; e < b1; e++) {
			cum += (double)sp_unkey((uint32_t)(sh.bucket[e] >> 32));
			if (cum >= target)
				break;
		}
		sh.r = (e < b1 ? e : b1 - 1) + 1;
	}
	__syncthreads();
	return sh.bucket[sh.r - 1];
}

/* Sum of exp(l - max) over the row: the raw log-softmax's normaliser. */
static __device__ double sp_raw_z(sp_shared &sh, const float *__restrict__ x, int64_t n, float m)
{
	double z = 0.0;
	sp_for_row(x, n, [&](float v, int64_t) { z += (double)expf(__fsub_rn(v, m)); });
	return sp_block_sum_d(sh, z);
}

__global__ static void __launch_bounds__(SP_THREADS)
	sample_kernel(int32_t *out_tokens, float *out_logprobs, const float *__restrict__ logits,
		      const struct pf_cuda_sample_params *params, int64_t n)
{
	__shared__ sp_shared sh;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int64_t row = blockIdx.x;
	const float *__restrict__ x = logits + row * n;
	const struct pf_cuda_sample_params p = params[row];
	const bool want_lp = p.want_logprob && out_logprobs;

	/* Pass 0: max (first index on ties), min and count of the finite
	 * logits, and whether any is NaN or +inf. */
	float mx = -INFINITY, mn = INFINITY;
	uint32_t best = 0xffffffffu, nf = 0, bad = 0;
	sp_for_row(x, n, [&](float v, int64_t i) {
		if (!(v < INFINITY)) {
			bad = 1;
		} else if (v > -INFINITY) {
			nf++;
			if (v > mx) /* strict: a thread meets its indices in order */
				mx = v, best = (uint32_t)i;
			mn = v < mn ? v : mn;
		}
	});
	for (int o = 16; o > 0; o >>= 1) {
		const float om = __shfl_xor_sync(0xffffffffu, mx, o);
		const uint32_t ob = sp_shfl(best, o);
		if (om > mx || (om == mx && ob < best))
			mx = om, best = ob;
		mn = fminf(mn, __shfl_xor_sync(0xffffffffu, mn, o));
	}
	nf = sp_warp_sum_u(nf);
	bad = sp_warp_max_u(bad);
	if (lane == 0) {
		sh.red_s[warp][0] = mx;
		sh.red_s[warp][1] = mn;
		sh.red_c[warp][0] = best;
		sh.red_c[warp][1] = nf;
		sh.red_c[warp][2] = bad;
	}
	__syncthreads();
	if (tid == 0) {
		float m = -INFINITY, lo = INFINITY;
		uint32_t b = 0xffffffffu, cnt = 0, bd = 0;
		for (int w = 0; w < SP_WARPS; w++) {
			const float wm = (float)sh.red_s[w][0];
			const uint32_t wb = sh.red_c[w][0];
			if (wm > m || (wm == m && wb < b))
				m = wm, b = wb;
			lo = fminf(lo, (float)sh.red_s[w][1]);
			cnt += sh.red_c[w][1];
			bd |= sh.red_c[w][2];
		}
		sh.m = m;
		sh.mn = lo;
		sh.best = b;
		sh.nf = cnt;
		sh.bad = bd;
	}
	__syncthreads();

	int32_t tok;
	if (sh.bad || sh.nf == 0) {
		tok = -1; /* the CPU sampler's -EDOM */
	} else if (!(p.temperature >= PF_CUDA_SAMPLE_GREEDY_TEMP)) {
		tok = (int32_t)sh.best;
	} else {
		sp_row r;
		r.m = sh.m;
		r.mn = sh.mn;
		r.inv_t = 1.0f / p.temperature;
		r.min_p = p.min_p > 0.0f ? p.min_p : 0.0f;
		r.kcut = 0;
		r.pcut = 0;
		uint32_t n_k = sh.nf;
		if (p.top_k > 0 && (uint32_t)p.top_k < sh.nf) {
			r.kcut = sp_search<false>(sh, x, n, r, sh.nf, (uint32_t)p.top_k, 1.0f);
			n_k = (uint32_t)p.top_k;
		}
		if (p.top_p < 1.0f)
			r.pcut = sp_search<true>(sh, x, n, r, n_k, 0, p.top_p);

		/* Draw, level 1: survivor mass of each warp's range of ids. */
		const int64_t span = (((n + SP_WARPS - 1) / SP_WARPS) + 31) & ~(int64_t)31;
		const int64_t w0 = (int64_t)warp * span < n ? (int64_t)warp * span : n;
		const int64_t w1 = w0 + span < n ? w0 + span : n;
		double ws = 0.0;
		for (int64_t i = w0 + lane; i < w1; i += 32)
			ws += (double)sp_surv_w(r, x[i], i);
		ws = sp_warp_sum_d(ws);
		if (lane == 0)
			sh.wsum[warp] = ws;
		__syncthreads();
		if (tid == 0) {
			double z = 0.0, cum = 0.0;
			for (int w = 0; w < SP_WARPS; w++)
				z += sh.wsum[w];
			const double target = p.u * z;
			int sel = -1, force = 0;
			for (int w = 0; w < SP_WARPS; w++) {
				if (sh.wsum[w] > 0.0 && cum + sh.wsum[w] > target) {
					sel = w;
					break;
				}
				cum += sh.wsum[w];
			}
			if (sel < 0 && z > 0.0) {
				/* rounding (u near 1): the last survivor */
				force = 1;
				cum = 0.0;
				for (int w = 0; w < SP_WARPS; w++) {
					if (sh.wsum[w] > 0.0)
						sel = w;
				}
				for (int w = 0; w < sel; w++)
					cum += sh.wsum[w];
			}
			sh.sel_warp = sel;
			sh.force = force;
			sh.base = cum;
			sh.dtarget = target;
			sh.tok = -1;
		}
		__syncthreads();
		const int sel = sh.sel_warp;
		if (sel >= 0) {
			/* Level 2: the selected range in contiguous thread slices. */
			const int64_t a = (int64_t)sel * span, e = a + span < n ? a + span : n;
			const int64_t q = (e - a + SP_THREADS - 1) / SP_THREADS;
			const int64_t s0 = a + tid * q < e ? a + tid * q : e, s1 = s0 + q < e ? s0 + q : e;
			double own = 0.0;
			for (int64_t i = s0; i < s1; i++)
				own += (double)sp_surv_w(r, x[i], i);
			sp_block_incl_d(sh, own);
			const double base = sh.base, target = sh.dtarget;
			int force = sh.force;
			uint32_t before = sp_block_sum_u(sh, force || !(base + sh.incl[tid] > target));
			if (before == SP_THREADS) {
				before = sp_block_max_u(sh, own > 0.0 ? (uint32_t)tid + 1 : 0) - 1;
				force = 1;
			}
			/* Level 3: that thread's elements. */
			if ((uint32_t)tid == before) {
				double cum = base + (tid ? sh.incl[tid - 1] : 0.0);
				int32_t last = -1;
				for (int64_t i = s0; i < s1; i++) {
					const float w = sp_surv_w(r, x[i], i);
					if (w > 0.0f) {
						cum += w;
						last = (int32_t)i;
						if (!force && cum > target)
							break;
					}
				}
				sh.tok = last;
			}
		}
		__syncthreads();
		tok = sh.tok;
	}

	double lse = 0.0;
	if (want_lp && tok >= 0)
		lse = (double)sh.m + log(sp_raw_z(sh, x, n, sh.m));
	if (tid == 0) {
		out_tokens[row] = tok;
		if (out_logprobs)
			out_logprobs[row] = want_lp && tok >= 0 ? (float)((double)x[tok] - lse) : NAN;
	}
}

extern "C" int pf_cuda_sample(int32_t *out_tokens, float *out_logprobs, const float *logits,
			      const struct pf_cuda_sample_params *params, int32_t n_rows, int64_t n,
			      const struct pf_cuda_launch *lc)
{
	if (n_rows < 0 || n <= 0 || n > INT32_MAX || (n_rows > 0 && (!out_tokens || !logits || !params)))
		return pf_cuda_bad_args(lc, "sample");
	if (n_rows == 0)
		return 0;
	sample_kernel<<<(unsigned)n_rows, SP_THREADS, 0, pf_cuda_stream(lc)>>>(out_tokens, out_logprobs, logits, params, n);
	return pf_cuda_launched(lc, "sample launch");
}
