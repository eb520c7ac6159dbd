/* attention.cu — paged attention over the KV pool: split-K decode with a
 * merge of partial softmaxes, and tiled causal prefill; see cuda.h. */
#include "kernels/cuda/common.cuh"

#include <cmath>

#define AD_WARPS 4
#define AD_THREADS (AD_WARPS * 32)
#define AD_SMEM_BUDGET (48 * 1024) /* the default per-block limit: no opt-in needed */
#define AD_MAX_SPLIT 512
#define AD_DREG (PF_CUDA_MAX_HEAD_DIM / 32) /* K elements per lane */

#define AP_TQ PF_CUDA_ATTN_TILE /* query rows per tile */
#define AP_TK 32                /* K/V positions per step: one per lane in the softmax */
#define AP_WARPS 4
#define AP_THREADS (AP_WARPS * 32)
static_assert(AP_TK == 32, "the prefill softmax gives each lane of a warp one position");

template <bool F16> static __device__ __forceinline__ float kv_at(const void *base, int64_t i)
{
	if constexpr (F16)
		return __half2float(((const __half *)base)[i]);
	else
		return ((const float *)base)[i];
}

/* The query as it meets a half cache: rounded to half (the CPU reference
 * does the same). */
template <bool F16> static __device__ __forceinline__ float q_as_kv(float v)
{
	if constexpr (F16)
		return __half2float(__float2half_rn(v));
	else
		return v;
}

/* Row of position j of a sequence in the pool: K[block][kv_head][slot]. */
static __device__ __forceinline__ int64_t kv_row(const int32_t *table, int32_t j, int32_t g, int32_t n_head_kv, int32_t bs)
{
	return ((int64_t)table[j / bs] * n_head_kv + g) * bs + j % bs;
}

/* ---- decode ------------------------------------------------------------------ */

struct ad_params {
	struct pf_cuda_attn_args a;
	const int32_t *rows;
	float *part_o;  /* (n_rows, n_head, n_splits, head_dim) unnormalised P·V of each split */
	float *part_ml; /* (n_rows, n_head, n_splits, 2) max and sum of e^(s - max) of each split */
	int32_t nq, split, n_splits;
};

static size_t ad_smem(int32_t nq, int32_t hd, int32_t split)
{
	/* row offsets (split int64), queries (nq, hd), scores (nq, split), m and l (nq, 2) */
	return (size_t)split * 8 + (size_t)nq * hd * 4 + (size_t)nq * split * 4 + (size_t)nq * 2 * 4;
}

/*
 * grid (n_rows, n_head_kv, n_splits).  Block (row i, KV head g, split s)
 * covers positions [s·split, min((s+1)·split, n_ctx)) for the nq query heads
 * of g: scores one warp per position (K read once for the group), softmax
 * per head, then P·V one thread per (head, dim).  A row with one split
 * writes its output; longer rows write partials for the merge.
 */
template <bool F16>
__global__ static void __launch_bounds__(AD_THREADS) attn_decode_kernel(const struct ad_params p)
{
	extern __shared__ long long ad_sm[];
	const struct pf_cuda_attn_args &a = p.a;
	const int32_t nq = p.nq, hd = a.head_dim, split = p.split;
	long long *rowoff = ad_sm;                         /* (split) pool row of each position */
	float *qs = (float *)(rowoff + split);             /* (nq, hd) */
	float *sc = qs + nq * hd;                          /* (nq, split) scores, then e^(s - m) */
	float *ml = sc + nq * split;                       /* (nq, 2) */
	const int32_t ri = blockIdx.x, g = blockIdx.y, s = blockIdx.z;
	const int32_t t = p.rows[ri];
	const int32_t n_ctx = a.pos[t] + 1;
	const int32_t j0 = s * split;
	if (j0 >= n_ctx)
		return; /* uniform over the block: this row is shorter than the grid */
	const int32_t j1 = min(j0 + split, n_ctx), n = j1 - j0;
	const int32_t n_valid = (n_ctx + split - 1) / split;
	const int32_t *table = a.tables + (int64_t)a.seq[t] * a.table_stride;
	const int32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

	/* query heads g·nq .. g·nq+nq-1 are contiguous in the row */
	const float *q = a.q + ((int64_t)t * a.n_head + (int64_t)g * nq) * hd;
	for (int32_t i = threadIdx.x; i < nq * hd; i += AD_THREADS)
		qs[i] = q_as_kv<F16>(q[i]);
	for (int32_t jj = threadIdx.x; jj < n; jj += AD_THREADS)
		rowoff[jj] = kv_row(table, j0 + jj, g, a.n_head_kv, a.block_size) * hd;
	__syncthreads();

	for (int32_t jj = warp; jj < n; jj += AD_WARPS) {
		float kr[AD_DREG];
#pragma unroll
		for (int i = 0; i < AD_DREG; i++) {
			const int32_t d = lane + 32 * i;
			kr[i] = d < hd ? kv_at<F16>(a.k_layer, rowoff[jj] + d) : 0.0f;
		}
		for (int32_t hh = 0; hh < nq; hh++) {
			float part = 0.0f;
#pragma unroll
			for (int i = 0; i < AD_DREG; i++) {
				const int32_t d = lane + 32 * i;
				if (d < hd)
					part += qs[hh * hd + d] * kr[i];
			}
			part = pf_warp_sum(part);
			if (lane == 0)
				sc[hh * split + jj] = part * a.scale;
		}
	}
	__syncthreads();

	for (int32_t hh = warp; hh < nq; hh += AD_WARPS) {
		float *r = sc + hh * split;
		float m = -INFINITY;
		for (int32_t i = lane; i < n; i += 32)
			m = fmaxf(m, r[i]);
		m = pf_warp_max(m);
		float l = 0.0f;
		for (int32_t i = lane; i < n; i += 32) {
			const float e = expf(r[i] - m);
			r[i] = e;
			l += e;
		}
		l = pf_warp_sum(l);
		if (lane == 0) {
			ml[2 * hh] = m;
			ml[2 * hh + 1] = l;
		}
	}
	__syncthreads();

	for (int32_t idx = threadIdx.x; idx < nq * hd; idx += AD_THREADS) {
		const int32_t hh = idx / hd, d = idx % hd;
		const float *pr = sc + hh * split;
		float acc = 0.0f;
		for (int32_t jj = 0; jj < n; jj++)
			acc += pr[jj] * kv_at<F16>(a.v_layer, rowoff[jj] + d);
		const int64_t h = (int64_t)g * nq + hh;
		if (n_valid == 1) {
			a.out[((int64_t)t * a.n_head + h) * hd + d] = acc / ml[2 * hh + 1];
		} else {
			const int64_t ps = ((int64_t)ri * a.n_head + h) * p.n_splits + s;
			p.part_o[ps * hd + d] = acc;
			if (d == 0) {
				p.part_ml[ps * 2] = ml[2 * hh];
				p.part_ml[ps * 2 + 1] = ml[2 * hh + 1];
			}
		}
	}
}

/* grid (n_rows, n_head): out = Σ_s o_s e^(m_s - M) / Σ_s l_s e^(m_s - M) over
 * the row's splits, M the largest m_s.  Rows of one split were written by
 * the decode kernel. */
__global__ static void __launch_bounds__(AD_THREADS) attn_merge_kernel(const struct ad_params p)
{
	const struct pf_cuda_attn_args &a = p.a;
	const int32_t ri = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
	const int32_t t = p.rows[ri];
	const int32_t n_valid = (a.pos[t] + 1 + p.split - 1) / p.split;
	if (n_valid == 1)
		return;
	const int64_t base = ((int64_t)ri * a.n_head + h) * p.n_splits;
	float M = -INFINITY;
	for (int32_t s = 0; s < n_valid; s++)
		M = fmaxf(M, p.part_ml[(base + s) * 2]);
	float L = 0.0f;
	for (int32_t s = 0; s < n_valid; s++)
		L += p.part_ml[(base + s) * 2 + 1] * expf(p.part_ml[(base + s) * 2] - M);
	for (int32_t d = threadIdx.x; d < hd; d += AD_THREADS) {
		float o = 0.0f;
		for (int32_t s = 0; s < n_valid; s++)
			o += p.part_o[(base + s) * hd + d] * expf(p.part_ml[(base + s) * 2] - M);
		a.out[((int64_t)t * a.n_head + h) * hd + d] = o / L;
	}
}

static bool attn_args_ok(const struct pf_cuda_attn_args *a)
{
	return a->n_head > 0 && a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->n_head_kv <= 65535 &&
	       a->n_head <= 65535 && a->head_dim > 0 && a->head_dim <= PF_CUDA_MAX_HEAD_DIM && a->block_size > 0 &&
	       a->table_stride > 0 && (a->kv_dtype == PF_DT_F16 || a->kv_dtype == PF_DT_F32);
}

extern "C" int pf_cuda_attn_split_len(int32_t n_head, int32_t n_head_kv, int32_t head_dim)
{
	if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0 || head_dim > PF_CUDA_MAX_HEAD_DIM)
		return -EINVAL;
	const int32_t nq = n_head / n_head_kv;
	for (int32_t split = AD_MAX_SPLIT; split >= 32; split /= 2)
		if (ad_smem(nq, head_dim, split) <= AD_SMEM_BUDGET)
			return split;
	return -EINVAL;
}

extern "C" size_t pf_cuda_attn_decode_scratch(int32_t n_rows, int32_t max_ctx, int32_t n_head, int32_t n_head_kv,
					      int32_t head_dim)
{
	const int split = pf_cuda_attn_split_len(n_head, n_head_kv, head_dim);
	if (split <= 0 || n_rows <= 0 || max_ctx <= split)
		return 0;
	const size_t n_splits = ((size_t)max_ctx + (size_t)split - 1) / (size_t)split;
	return (size_t)n_rows * (size_t)n_head * n_splits * ((size_t)head_dim + 2);
}

extern "C" int pf_cuda_attn_decode(const struct pf_cuda_attn_args *a, const int32_t *rows, int32_t n_rows, int32_t max_ctx,
				   float *scratch, const struct pf_cuda_launch *lc)
{
	const int split = pf_cuda_attn_split_len(a->n_head, a->n_head_kv, a->head_dim);
	if (!attn_args_ok(a) || split <= 0 || n_rows < 0 || max_ctx <= 0)
		return pf_cuda_bad_args(lc, "attn_decode");
	if (n_rows == 0)
		return 0;
	const int32_t n_splits = (max_ctx + split - 1) / split;
	if (n_splits > 65535 || (n_splits > 1 && !scratch))
		return pf_cuda_bad_args(lc, "attn_decode");
	struct ad_params p;
	p.a = *a;
	p.rows = rows;
	p.nq = a->n_head / a->n_head_kv;
	p.split = split;
	p.n_splits = n_splits;
	p.part_o = scratch;
	p.part_ml = scratch ? scratch + (size_t)n_rows * a->n_head * n_splits * a->head_dim : nullptr;
	const size_t smem = ad_smem(p.nq, a->head_dim, split);
	dim3 grid((unsigned)n_rows, (unsigned)a->n_head_kv, (unsigned)n_splits);
	if (a->kv_dtype == PF_DT_F16)
		attn_decode_kernel<true><<<grid, AD_THREADS, smem, pf_cuda_stream(lc)>>>(p);
	else
		attn_decode_kernel<false><<<grid, AD_THREADS, smem, pf_cuda_stream(lc)>>>(p);
	int r = pf_cuda_launched(lc, "attn_decode launch");
	if (r || n_splits == 1)
		return r;
	attn_merge_kernel<<<dim3((unsigned)n_rows, (unsigned)a->n_head), AD_THREADS, 0, pf_cuda_stream(lc)>>>(p);
	return pf_cuda_launched(lc, "attn_merge launch");
}

/* ---- prefill ------------------------------------------------------------------ */

static size_t ap_smem(int32_t hd)
{
	/* Q (TQ, hd), K (TK, hd+1: the pad puts a warp's 32 positions in 32
	 * banks), V (TK, hd), S (TQ, TK), O (TQ, hd), m/l/corr (TQ each), pos (TQ) */
	return 4 * ((size_t)AP_TQ * hd + (size_t)AP_TK * (hd + 1) + (size_t)AP_TK * hd + AP_TQ * AP_TK +
		    (size_t)AP_TQ * hd + 3 * AP_TQ + AP_TQ);
}

/*
 * grid (n_tiles, n_head).  Block (tile, head h) holds the tile's queries of
 * head h and walks positions 0..max pos of the tile in steps of TK, staging
 * K and V (as floats) in shared memory: scores one thread per (query,
 * position), an online softmax one warp per query (lane = position), then
 * O = O·corr + P·V one thread per (query, dim).  Causal per query: position
 * j counts for query row qi when j ≤ pos[qi].
 */
template <bool F16>
__global__ static void __launch_bounds__(AP_THREADS)
attn_prefill_kernel(const struct pf_cuda_attn_args a, const int32_t *tiles)
{
	extern __shared__ float ap_sm[];
	const int32_t hd = a.head_dim, kst = hd + 1;
	float *Q = ap_sm;                 /* (TQ, hd) */
	float *K = Q + AP_TQ * hd;        /* (TK, hd+1) */
	float *V = K + AP_TK * kst;       /* (TK, hd) */
	float *S = V + AP_TK * hd;        /* (TQ, TK) */
	float *O = S + AP_TQ * AP_TK;     /* (TQ, hd) */
	float *mrow = O + AP_TQ * hd;     /* (TQ) running max */
	float *lrow = mrow + AP_TQ;       /* (TQ) running sum */
	float *crow = lrow + AP_TQ;       /* (TQ) this step's rescale of O and l */
	int32_t *qpos = (int32_t *)(crow + AP_TQ); /* (TQ) position of each query, -1 past the tile */
	const int32_t t0 = tiles[2 * blockIdx.x];
	const int32_t nt = min(tiles[2 * blockIdx.x + 1], AP_TQ); /* the contract; a bad tile must not overrun shared memory */
	const int32_t h = blockIdx.y, g = h / (a.n_head / a.n_head_kv);
	const int32_t *table = a.tables + (int64_t)a.seq[t0] * a.table_stride;
	const int32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

	int32_t maxpos = 0;
	for (int32_t qi = 0; qi < nt; qi++)
		maxpos = max(maxpos, a.pos[t0 + qi]);
	for (int32_t i = threadIdx.x; i < AP_TQ * hd; i += AP_THREADS) {
		const int32_t qi = i / hd, d = i % hd;
		Q[i] = qi < nt ? q_as_kv<F16>(a.q[((int64_t)(t0 + qi) * a.n_head + h) * hd + d]) : 0.0f;
		O[i] = 0.0f;
	}
	for (int32_t qi = threadIdx.x; qi < AP_TQ; qi += AP_THREADS) {
		qpos[qi] = qi < nt ? a.pos[t0 + qi] : -1;
		mrow[qi] = -INFINITY;
		lrow[qi] = 0.0f;
	}
	__syncthreads();

	for (int32_t j0 = 0; j0 <= maxpos; j0 += AP_TK) {
		for (int32_t i = threadIdx.x; i < AP_TK * hd; i += AP_THREADS) {
			const int32_t jj = i / hd, d = i % hd, j = j0 + jj;
			float kv = 0.0f, vv = 0.0f;
			if (j <= maxpos) {
				const int64_t off = kv_row(table, j, g, a.n_head_kv, a.block_size) * hd + d;
				kv = kv_at<F16>(a.k_layer, off);
				vv = kv_at<F16>(a.v_layer, off);
			}
			K[jj * kst + d] = kv;
			V[jj * hd + d] = vv;
		}
		__syncthreads();
		for (int32_t i = threadIdx.x; i < AP_TQ * AP_TK; i += AP_THREADS) {
			const int32_t qi = i / AP_TK, jj = i % AP_TK;
			float s = -INFINITY;
			if (j0 + jj <= qpos[qi]) { /* false for every position of a row past the tile (-1) */
				float dot = 0.0f;
				for (int32_t d = 0; d < hd; d++)
					dot += Q[qi * hd + d] * K[jj * kst + d];
				s = dot * a.scale;
			}
			S[i] = s;
		}
		__syncthreads();
		for (int32_t qi = warp; qi < AP_TQ; qi += AP_WARPS) {
			const float s = S[qi * AP_TK + lane];
			const float m_old = mrow[qi];
			const float m_new = fmaxf(m_old, pf_warp_max(s));
			/* a masked score, or a row with nothing yet, adds nothing
			 * (and never forms -inf - -inf) */
			const float pv = s == -INFINITY ? 0.0f : expf(s - m_new);
			const float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
			const float sum = pf_warp_sum(pv);
			S[qi * AP_TK + lane] = pv;
			__syncwarp();
			if (lane == 0) {
				mrow[qi] = m_new;
				lrow[qi] = lrow[qi] * corr + sum;
				crow[qi] = corr;
			}
		}
		__syncthreads();
		for (int32_t i = threadIdx.x; i < AP_TQ * hd; i += AP_THREADS) {
			const int32_t qi = i / hd, d = i % hd;
			float acc = O[i] * crow[qi];
			for (int32_t jj = 0; jj < AP_TK; jj++)
				acc += S[qi * AP_TK + jj] * V[jj * hd + d];
			O[i] = acc;
		}
		__syncthreads(); /* before the next step overwrites K, V and S */
	}
	for (int32_t i = threadIdx.x; i < nt * hd; i += AP_THREADS) {
		const int32_t qi = i / hd, d = i % hd;
		a.out[((int64_t)(t0 + qi) * a.n_head + h) * hd + d] = O[i] / lrow[qi];
	}
}

template <bool F16>
static int launch_prefill(const struct pf_cuda_attn_args *a, const int32_t *tiles, int32_t n_tiles, size_t smem,
			  const struct pf_cuda_launch *lc)
{
	/* above 48 KiB a kernel must opt in to more shared memory per block */
	if (smem > 48 * 1024) {
		int r = pf_cuda_check(cudaFuncSetAttribute(attn_prefill_kernel<F16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
							   (int)smem),
				      "cudaFuncSetAttribute(attn_prefill)", lc->err, lc->errlen);
		if (r)
			return r;
	}
	dim3 grid((unsigned)n_tiles, (unsigned)a->n_head);
	attn_prefill_kernel<F16><<<grid, AP_THREADS, smem, pf_cuda_stream(lc)>>>(*a, tiles);
	return pf_cuda_launched(lc, "attn_prefill launch");
}

extern "C" int pf_cuda_attn_prefill(const struct pf_cuda_attn_args *a, const int32_t *tiles, int32_t n_tiles,
				    const struct pf_cuda_launch *lc)
{
	if (!attn_args_ok(a) || n_tiles < 0)
		return pf_cuda_bad_args(lc, "attn_prefill");
	if (n_tiles == 0)
		return 0;
	const size_t smem = ap_smem(a->head_dim);
	return a->kv_dtype == PF_DT_F16 ? launch_prefill<true>(a, tiles, n_tiles, smem, lc)
					: launch_prefill<false>(a, tiles, n_tiles, smem, lc);
}
