// The engine's attention kernels, compiled after kernels.cu in one NVRTC program (its helpers
// and types are in scope).
//
// A pass's projections are rows `q | k | v` of width ld = q_width + 2 kv_width: H query heads,
// then Hkv key heads and Hkv value heads of width head_dim (GPT-2: Hkv = H; grouped-query
// attention: query head h reads key/value head h / group, group = H / Hkv). The prefix cache
// keeps rows `k | v` of width 2 kv_width (a prefix's queries are never read again).
//
// Token rows are packed (no padding): sequence s owns rows [own_start, own_start + own_len)
// of the pass, and, when it continues a cached prefix, rows [pre_start, pre_start + pre_len)
// of the prefix cache. Its keys are the prefix's tokens followed by its own, in that order
// ("virtual" key index j: j < pre_len is prefix row j, else own row j - pre_len); query i of
// its own tokens sees keys j <= pre_len + i (causal). A score gets `penalty` (-100) added
// where the query's and the key's token types differ (the calibration mask).

// Per sequence, 5 ints: pre_start, pre_len, own_start, own_len, unused.
struct SeqInfo {
    int pre_start, pre_len, own_start, own_len, pad;
};

// Simple attention: one warp per query. Any head width (≤ 32 * 8), f32 or f16. Queries are
// items (seq, own index i, output row). Scores go through shared memory (max_keys per warp).
template <typename T>
__device__ void attention_simt(const T* __restrict__ pre, const u8* __restrict__ pre_types,
                               const T* __restrict__ own, const u8* __restrict__ own_types,
                               T* __restrict__ out, const SeqInfo* __restrict__ seqs,
                               const int* __restrict__ items, int n_items, int q_width,
                               int kv_width, int group, int ld, int head_dim, float scale,
                               float penalty, int max_keys) {
    extern __shared__ float smem[];
    const int warps = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int item = blockIdx.x * warps + warp;
    const int head = blockIdx.y;
    const int kv_col = (head / group) * head_dim;
    if (item >= n_items) return;
    const int seq = items[3 * item], qi = items[3 * item + 1], out_row = items[3 * item + 2];
    const SeqInfo s = seqs[seq];
    // Virtual key j's key head (its value head is kv_width further on).
    auto key_at = [&](int j) -> const T* {
        return j < s.pre_len
                   ? pre + (size_t)(s.pre_start + j) * (2 * kv_width) + kv_col
                   : own + (size_t)(s.own_start + j - s.pre_len) * ld + q_width + kv_col;
    };
    float* q = smem + warp * (head_dim + max_keys);
    float* scores = q + head_dim;
    const size_t q_row = (size_t)(s.own_start + qi);
    for (int c = lane; c < head_dim; c += 32)
        q[c] = Elem<T>::load(own + q_row * ld + head * head_dim + c) * scale;
    const u8 q_type = own_types[q_row];
    __syncwarp();
    const int n_keys = s.pre_len + qi + 1;
    float m = NEG_INF;
    for (int j = lane; j < n_keys; j += 32) {
        const u8 k_type = j < s.pre_len ? pre_types[s.pre_start + j]
                                        : own_types[s.own_start + j - s.pre_len];
        const T* k = key_at(j);
        float acc = 0.f;
        for (int c = 0; c < head_dim; ++c) acc += q[c] * Elem<T>::load(k + c);
        if (k_type != q_type) acc += penalty;
        scores[j] = acc;
        m = fmaxf(m, acc);
    }
    m = warp_max(m);
    float l = 0.f;
    for (int j = lane; j < n_keys; j += 32) {
        float e = __expf(scores[j] - m);
        scores[j] = e;
        l += e;
    }
    l = warp_sum(l);
    __syncwarp();
    const float inv = 1.f / l;
    for (int c = lane; c < head_dim; c += 32) {
        float acc = 0.f;
        for (int j = 0; j < n_keys; ++j)
            acc += scores[j] * Elem<T>::load(key_at(j) + kv_width + c);
        Elem<T>::store(out + (size_t)out_row * q_width + head * head_dim + c, acc * inv);
    }
}

extern "C" __global__ void attention_simt_f16(const half_t* pre, const u8* pre_types,
                                              const half_t* own, const u8* own_types,
                                              half_t* out, const SeqInfo* seqs,
                                              const int* items, int n_items, int q_width,
                                              int kv_width, int group, int ld, int head_dim,
                                              float scale, float penalty, int max_keys) {
    attention_simt<half_t>(pre, pre_types, own, own_types, out, seqs, items, n_items, q_width,
                           kv_width, group, ld, head_dim, scale, penalty, max_keys);
}
extern "C" __global__ void attention_simt_f32(const float* pre, const u8* pre_types,
                                              const float* own, const u8* own_types,
                                              float* out, const SeqInfo* seqs,
                                              const int* items, int n_items, int q_width,
                                              int kv_width, int group, int ld, int head_dim,
                                              float scale, float penalty, int max_keys) {
    attention_simt<float>(pre, pre_types, own, own_types, out, seqs, items, n_items, q_width,
                          kv_width, group, ld, head_dim, scale, penalty, max_keys);
}

// ---------------------------------------------------------------------------------------
// Flash attention on tensor cores: f16, head width HD (64 or 128), every query of a sequence.
// A block (4 warps) takes 64 queries of one sequence and one head; each warp 16 of them.
// Keys come in tiles of KT (64 for 64-wide heads, 32 for 128-wide ones: the two stages of K
// and V stay within 48 KiB of shared memory) through shared memory (double-buffered); scores
// stay in registers (online softmax, f32), so no [queries, keys] matrix is ever written.
// mma.sync m16n8k16, f32 accumulation.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .f16): g = lane / 4, c = lane % 4.
//   A (16x16, row-major): a0 = (g, 2c..2c+1), a1 = (g+8, 2c..), a2 = (g, 2c+8..), a3 = (g+8, 2c+8..)
//   B (16x8, "col"):      b0 = (k 2c..2c+1, n g), b1 = (k 2c+8.., n g)
//   C (16x8, f32):        c0,c1 = (g, 2c..2c+1), c2,c3 = (g+8, 2c..2c+1)
#define QUERY_TILE 64  // queries per block: 4 warps of 16

__device__ __forceinline__ void mma_16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16 bytes global -> shared, asynchronously; `valid` false zero-fills (reads nothing).
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, bool valid) {
    int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// The steps both tensor-core kernels share. A warp holds 16 queries of a tile; a thread two of
// them, rows a = g and b = g + 8, in the fragment layouts above.

// A tensor-core block's work (attention.rs's `tile_list` writes it): its sequence, its first
// query and that query's output row, 32 bytes, so that a block finds its tile in one read
// (two 16-byte loads) instead of a read of the list and then one of the sequence table.
struct TileWork {
    SeqInfo s;
    int q0, row0, unused;
};
static_assert(sizeof(TileWork) == TILE_WORK_BYTES, "attention.rs's TILE_BYTES");

// Where a block's tile is (its sequence, first query, output row of the first query; the
// head's query and key/value columns) and where this thread is in it (warp, lane, and the
// fragment coordinates g = lane / 4, c = lane % 4).
struct TileSite {
    SeqInfo s;
    int q0, row0, col, kv_col;
    int warp, lane, g, c;
};
__device__ __forceinline__ TileSite tile_site(const TileWork* __restrict__ tiles, int group,
                                              int hd) {
    const int4* work = reinterpret_cast<const int4*>(tiles + blockIdx.x);
    const int4 a = __ldg(work), b = __ldg(work + 1);
    TileSite t;
    t.s = SeqInfo{a.x, a.y, a.z, a.w, b.x};
    t.q0 = b.y;
    t.row0 = b.z;
    t.col = blockIdx.y * hd;
    t.kv_col = (blockIdx.y / group) * hd;
    t.warp = threadIdx.x >> 5;
    t.lane = threadIdx.x & 31;
    t.g = t.lane >> 2;
    t.c = t.lane & 3;
    return t;
}

// The Q fragments of the thread's two queries (rows qa, qb of the sequence's own; zeros
// past its end) as A fragments, one per 16 head dims; the queries' token types.
template <int HD>
__device__ __forceinline__ void load_queries(unsigned (&qf)[HD / 16][4], u8& ta, u8& tb,
                                             const half_t* __restrict__ own,
                                             const u8* __restrict__ own_types, const SeqInfo& s,
                                             int qa, int qb, int col, int ld, int c) {
    const bool va = qa < s.own_len, vb = qb < s.own_len;
    const half_t* ra = own + (size_t)(s.own_start + (va ? qa : 0)) * ld + col;
    const half_t* rb = own + (size_t)(s.own_start + (vb ? qb : 0)) * ld + col;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        int k0 = kk * 16 + 2 * c;
        qf[kk][0] = va ? *(const unsigned*)(ra + k0) : 0u;
        qf[kk][1] = vb ? *(const unsigned*)(rb + k0) : 0u;
        qf[kk][2] = va ? *(const unsigned*)(ra + k0 + 8) : 0u;
        qf[kk][3] = vb ? *(const unsigned*)(rb + k0 + 8) : 0u;
    }
    ta = own_types[s.own_start + (va ? qa : 0)];
    tb = own_types[s.own_start + (vb ? qb : 0)];
}

// A tile's K and V rows into shared memory by cp.async, each thread always the same 16-byte
// chunk (ch) of the same rows (r0, r0 + STEP, ...), so that a tile's loads are one pointer
// choice and one address per row. The 128 threads of a block cover KT rows of HD halves.
template <int HD, int KT>
struct KeyLoader {
    static constexpr int CHUNKS = HD / 8;       // 16-byte chunks of a row
    static constexpr int STEP = 128 / CHUNKS;   // rows between a thread's rows
    static constexpr int ROWS = KT / STEP;      // rows a thread loads a tile
    static_assert(128 % CHUNKS == 0 && KT % STEP == 0, "a tile's chunks split evenly");
    // The thread's chunk of virtual key 0's key head, as if every key were a prefix row or
    // every key an own row (the value head is kv_width further on).
    const half_t* pre_row;
    const half_t* own_row;
    long long pre_ld, own_ld;
    int pre_len, n_keys, kv_width;
    int r0, ch;

    __device__ __forceinline__ KeyLoader(const half_t* pre, const half_t* own, const SeqInfo& s,
                                         int kv_width_, int q_width, int ld, int kv_col) {
        ch = threadIdx.x % CHUNKS;
        r0 = threadIdx.x / CHUNKS;
        kv_width = kv_width_;
        pre_ld = 2 * kv_width_;
        own_ld = ld;
        pre_len = s.pre_len;
        n_keys = s.pre_len + s.own_len;
        pre_row = pre + (long long)s.pre_start * pre_ld + kv_col + ch * 8;
        own_row = own + ((long long)s.own_start - s.pre_len) * own_ld + q_width + kv_col + ch * 8;
    }

    // Rows r0 + i STEP of the tile at key j0 to k_dst / v_dst + i STEP row_bytes (shared
    // addresses of row r0's chunk); rows past the keys zero-filled.
    __device__ __forceinline__ void load(unsigned k_dst, unsigned v_dst, int row_bytes,
                                         int j0) const {
#pragma unroll
        for (int i = 0; i < ROWS; ++i) {
            const int j = j0 + r0 + i * STEP;
            const bool valid = j < n_keys;
            const half_t* k = !valid         ? own_row
                              : j < pre_len ? pre_row + j * pre_ld
                                            : own_row + j * own_ld;
            const unsigned at = i * STEP * row_bytes;
            cp_async16(k_dst + at, k, valid);
            cp_async16(v_dst + at, k + kv_width, valid);
        }
    }
};

// A tile's key types in two steps, so that their global reads overlap the work before they
// are needed (a read stored at once would hold the warp, and with it the block's next
// product, for a memory round trip every tile). fetch_key_type: thread r < KT's key, j0 + r,
// its type (0 past the keys); store_key_type: that type into kt[r] as 0.f or 1.f.
template <int KT>
__device__ __forceinline__ u8 fetch_key_type(const u8* __restrict__ pre_types,
                                             const u8* __restrict__ own_types, const SeqInfo& s,
                                             int j0, int n_keys) {
    static_assert(KT <= 128, "a thread a key: a tile's keys within the block's threads");
    const int j = j0 + (int)threadIdx.x;
    if ((int)threadIdx.x >= KT || j >= n_keys) return 0;
    return j < s.pre_len ? __ldg(pre_types + s.pre_start + j)
                         : __ldg(own_types + s.own_start + j - s.pre_len);
}
template <int KT>
__device__ __forceinline__ void store_key_type(float* kt, u8 type) {
    if ((int)threadIdx.x < KT) kt[threadIdx.x] = type ? 1.f : 0.f;
}

// The running softmax state of a thread's two query rows. Scores stay in raw units (before
// the attention's scale): the scale is applied inside the exponent.
//
// The calibration adds `penalty` where the key's and the query's types (0 or 1) differ:
// penalty (tq + tk (1 - 2 tq)). Its part penalty tq is the same for a row's every key, which a
// softmax does not see, so a row adds tk times its `pen` = penalty (1 - 2 tq) alone (in raw
// units: divided by the scale): one multiply-add a score.
struct RowPair {
    float ma, mb;  // maxima so far (-inf before any key), raw units
    float la, lb;  // this thread's part of the sums of exp(scale (score - max))
    int last_a, last_b;  // the last key each query sees (causal)
    float pa, pb;  // the rows' calibration `pen`, raw units
};

// A thread's rows before any key: queries qa, qb of sequence s, of types ta, tb.
__device__ __forceinline__ RowPair start_rows(const SeqInfo& s, int qa, int qb, u8 ta, u8 tb,
                                              float raw_penalty) {
    return RowPair{NEG_INF, NEG_INF, 0.f, 0.f, s.pre_len + qa, s.pre_len + qb,
                   ta ? -raw_penalty : raw_penalty, tb ? -raw_penalty : raw_penalty};
}

// Whether the keys [j0, j0 + keys) need the causal or end mask for queries from `first` on:
// past the sequence's keys, or later than the first query's last key.
__device__ __forceinline__ bool needs_mask(const SeqInfo& s, int j0, int keys, int first) {
    const int end = j0 + keys;
    return end > s.pre_len + s.own_len || end - 1 > s.pre_len + first;
}

// 2^x by the special-function unit alone (denormal results flush to zero; 2^-inf = 0).
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// One key tile's step of the online softmax. Reads the raw scores `sc` (NT 8-key column tiles
// from key kbase of the tile at j0, C layout), adds the calibration (kt: the keys' types),
// with MASK -inf past the keys or the query's last; advances the maxima and sums; writes the
// probabilities exp(scale2 (score - max)) (scale2 in log2 units) as f16 A fragments `pf`, one
// per 16 keys. Returns in corr_a / corr_b the factors that bring the output so far to the new
// maxima. The scores are only read, so their registers may take the next tile's scores.
template <int NT, bool MASK>
__device__ __forceinline__ void softmax_step(const float (&sc)[NT][4], RowPair& r,
                                             const float* kt, int kbase, int j0, int c,
                                             int n_keys, float scale2,
                                             unsigned (&pf)[NT / 2][4], float& corr_a,
                                             float& corr_b) {
    float x[NT][4];
    float mxa = r.ma, mxb = r.mb;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int k = kbase + nt * 8 + 2 * c + e;
            const float tk = kt[k];
            float a = fmaf(tk, r.pa, sc[nt][e]);
            float b = fmaf(tk, r.pb, sc[nt][2 + e]);
            if (MASK) {
                const int j = j0 + k;
                a = (j < n_keys && j <= r.last_a) ? a : NEG_INF;
                b = (j < n_keys && j <= r.last_b) ? b : NEG_INF;
            }
            x[nt][e] = a;
            x[nt][2 + e] = b;
            mxa = fmaxf(mxa, a);
            mxb = fmaxf(mxb, b);
        }
    }
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
    mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
    mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
    // A row whose keys are all masked so far keeps max -inf: use 0 so exp gives 0, not NaN.
    const float ba = mxa == NEG_INF ? 0.f : -mxa * scale2;
    const float bb = mxb == NEG_INF ? 0.f : -mxb * scale2;
    corr_a = exp2_ftz(fmaf(r.ma, scale2, ba));
    corr_b = exp2_ftz(fmaf(r.mb, scale2, bb));
    r.ma = mxa;
    r.mb = mxb;
    float sa = 0.f, sb = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        const float p0 = exp2_ftz(fmaf(x[nt][0], scale2, ba));
        const float p1 = exp2_ftz(fmaf(x[nt][1], scale2, ba));
        const float p2 = exp2_ftz(fmaf(x[nt][2], scale2, bb));
        const float p3 = exp2_ftz(fmaf(x[nt][3], scale2, bb));
        sa += p0 + p1;
        sb += p2 + p3;
        pf[nt >> 1][(nt & 1) * 2 + 0] = pack_half2(p0, p1);
        pf[nt >> 1][(nt & 1) * 2 + 1] = pack_half2(p2, p3);
    }
    r.la = fmaf(r.la, corr_a, sa);
    r.lb = fmaf(r.lb, corr_b, sb);
}

// softmax_step with the mask where `mask` says (a warp-uniform choice).
template <int NT>
__device__ __forceinline__ void softmax_step_any(bool mask, const float (&sc)[NT][4], RowPair& r,
                                                 const float* kt, int kbase, int j0, int c,
                                                 int n_keys, float scale2,
                                                 unsigned (&pf)[NT / 2][4], float& corr_a,
                                                 float& corr_b) {
    if (mask)
        softmax_step<NT, true>(sc, r, kt, kbase, j0, c, n_keys, scale2, pf, corr_a, corr_b);
    else
        softmax_step<NT, false>(sc, r, kt, kbase, j0, c, n_keys, scale2, pf, corr_a, corr_b);
}

template <int OT>
__device__ __forceinline__ void scale_rows(float (&o)[OT][4], float corr_a, float corr_b) {
#pragma unroll
    for (int i = 0; i < OT; ++i) {
        o[i][0] *= corr_a;
        o[i][1] *= corr_a;
        o[i][2] *= corr_b;
        o[i][3] *= corr_b;
    }
}

// The rows' sums, each thread's part so far, made whole: summed over the quad of threads that
// share a row.
__device__ __forceinline__ void sum_over_quad(RowPair& r) {
    r.la += __shfl_xor_sync(0xffffffffu, r.la, 1);
    r.la += __shfl_xor_sync(0xffffffffu, r.la, 2);
    r.lb += __shfl_xor_sync(0xffffffffu, r.lb, 1);
    r.lb += __shfl_xor_sync(0xffffffffu, r.lb, 2);
}

// Writes the rows of queries qa, qb (those before the sequence's end), normalised by their
// whole sums (see sum_over_quad), at output rows row0 + q - q0, head columns from col.
template <int OT>
__device__ __forceinline__ void store_rows(const float (&o)[OT][4], const RowPair& r,
                                           half_t* out, const SeqInfo& s, int qa, int qb, int q0,
                                           int row0, int col, int q_width, int c) {
    const bool va = qa < s.own_len, vb = qb < s.own_len;
    const float ia = va ? 1.f / r.la : 0.f, ib = vb ? 1.f / r.lb : 0.f;
#pragma unroll
    for (int i = 0; i < OT; ++i) {
        int cc = col + i * 8 + 2 * c;
        if (va)
            *(unsigned*)(out + (size_t)(row0 + qa - q0) * q_width + cc) =
                pack_half2(o[i][0] * ia, o[i][1] * ia);
        if (vb)
            *(unsigned*)(out + (size_t)(row0 + qb - q0) * q_width + cc) =
                pack_half2(o[i][2] * ib, o[i][3] * ib);
    }
}

// tiles: per block, its TileWork (sequence, first query, output row of the first query): a
// pass's own tiles write query i at row own_start + i; the final block's last-row tiles
// (first query = the last, one valid query) write sequence s's at row s.
//
// SPLIT (tiles of at most 16 queries: short suffixes, last rows): the four warps take the
// same 16 queries and each a quarter of every key tile (16 keys), so no warp idles; their
// partial softmax states (max, sum, output) are merged through shared memory at the end.
// Two shared-memory stages: the next K/V tile loads (cp.async) while the current one is
// computed. Shared rows are HD + 8 halves long (144 or 272 bytes: ldmatrix and LDS.32 stay
// free of bank conflicts).
template <int HD, int KT, bool SPLIT>
__device__ __forceinline__ void attention_mma(
    const half_t* __restrict__ pre, const u8* __restrict__ pre_types,
    const half_t* __restrict__ own, const u8* __restrict__ own_types, half_t* __restrict__ out,
    const TileWork* __restrict__ tiles, int q_width, int kv_width, int group, int ld, float scale,
    float penalty) {
    constexpr int SROW = HD + 8;
    constexpr int KSTEPS = HD / 16;  // k-steps of Q K^T over the head width
    constexpr int OTILES = HD / 8;   // 8-wide column tiles of the output
    constexpr int WK = SPLIT ? 16 : KT;  // keys of a tile each warp computes
    constexpr int NTILES = WK / 8;         // 8-key column tiles of the scores
    __shared__ __align__(16) half_t ks_buf[2][KT * SROW];
    __shared__ __align__(16) half_t vs_buf[2][KT * SROW];
    __shared__ float kt_buf[2][KT];

    const TileSite site = tile_site(tiles, group, HD);
    const SeqInfo s = site.s;
    const int q0 = site.q0, row0 = site.row0, col = site.col, kv_col = site.kv_col;
    const int warp = site.warp, lane = site.lane, g = site.g, c = site.c;

    // This warp's queries: own indices qw + g and qw + g + 8; its keys of a tile from kbase.
    const int qw = SPLIT ? q0 : q0 + warp * 16;
    const int kbase = SPLIT ? warp * 16 : 0;
    const int qa = qw + g, qb = qw + g + 8;
    unsigned qf[KSTEPS][4];  // [k-step][a0..a3]
    u8 ta, tb;
    load_queries<HD>(qf, ta, tb, own, own_types, s, qa, qb, col, ld, c);
    RowPair rows = start_rows(s, qa, qb, ta, tb, penalty / scale);

    float o[OTILES][4];
#pragma unroll
    for (int i = 0; i < OTILES; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    const float sc = scale * 1.4426950408889634f;  // the scale in log2 units

    const int n_keys = s.pre_len + s.own_len;
    const int last_q = min(q0 + QUERY_TILE, s.own_len) - 1;
    const int key_end = min(n_keys, s.pre_len + last_q + 1);
    // Warps whose 16 queries are all past the sequence's end only help load the tiles.
    const bool active = qw < s.own_len;

    // Tile j0's K and V rows into stage `st` by cp.async (rows past the keys zero-filled);
    // its key types are fetched beside them and stored after the tile before's work.
    const KeyLoader<HD, KT> keys(pre, own, s, kv_width, q_width, ld, kv_col);
    const int at = keys.r0 * SROW + keys.ch * 8;
    auto load_tile = [&](int st, int j0) {
        keys.load(smem_addr(ks_buf[st] + at), smem_addr(vs_buf[st] + at), SROW * 2, j0);
        cp_async_commit();
        return fetch_key_type<KT>(pre_types, own_types, s, j0, n_keys);
    };
    store_key_type<KT>(kt_buf[0], load_tile(0, 0));
    for (int j0 = 0, st = 0; j0 < key_end; j0 += KT, st ^= 1) {
        // The next tile loads while this one is computed.
        const bool more = j0 + KT < key_end;
        u8 next_type = 0;
        if (more) {
            next_type = load_tile(st ^ 1, j0 + KT);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (active) {
            const half_t* ks = ks_buf[st];
            const half_t* vs = vs_buf[st];
            // S = Q K^T for 16 queries x KT keys.
            float sacc[NTILES][4];
#pragma unroll
            for (int nt = 0; nt < NTILES; ++nt) {
                sacc[nt][0] = sacc[nt][1] = sacc[nt][2] = sacc[nt][3] = 0.f;
                const half_t* krow = ks + (kbase + nt * 8 + g) * SROW + 2 * c;
#pragma unroll
                for (int kk = 0; kk < KSTEPS; ++kk) {
                    unsigned b0 = *(const unsigned*)(krow + kk * 16);
                    unsigned b1 = *(const unsigned*)(krow + kk * 16 + 8);
                    mma_16816(sacc[nt], qf[kk], b0, b1);
                }
            }
            float corr_a, corr_b;
            unsigned pf[WK / 16][4];  // P as A fragments, per 16-key step
            softmax_step_any<NTILES>(needs_mask(s, j0 + kbase, WK, qw), sacc, rows, kt_buf[st],
                                     kbase, j0, c, n_keys, sc, pf, corr_a, corr_b);
            scale_rows<OTILES>(o, corr_a, corr_b);
            // O += P V: V tile rows are keys; ldmatrix.trans gives the B fragments.
#pragma unroll
            for (int kk = 0; kk < WK / 16; ++kk) {
#pragma unroll
                for (int dt = 0; dt < HD / 16; ++dt) {
                    int m = lane >> 3;  // which 8x8 matrix this lane addresses
                    int row = kbase + kk * 16 + (m & 1) * 8 + (lane & 7);
                    int cc = dt * 16 + (m >> 1) * 8;
                    unsigned b[4];
                    ldmatrix_x4_trans(b, smem_addr(vs + row * SROW + cc));
                    mma_16816(o[2 * dt], pf[kk], b[0], b[1]);
                    mma_16816(o[2 * dt + 1], pf[kk], b[2], b[3]);
                }
            }
        }
        // Stage st ^ 1's key types: nobody reads them before the barrier.
        if (more) store_key_type<KT>(kt_buf[st ^ 1], next_type);
        __syncthreads();
    }

    sum_over_quad(rows);
    if (SPLIT) {
        // Each warp's (max, sum, unnormalised output) of its keys into shared memory (the K
        // stages, free after the loop's last barrier); warp 0 rescales them to the common
        // max and sums.
        static_assert(!SPLIT || 4 * 16 * (HD + 2) * 4 <= 2 * KT * SROW * 2, "merge space");
        float* part = reinterpret_cast<float*>(&ks_buf[0][0]) + warp * 16 * (HD + 2);
#pragma unroll
        for (int i = 0; i < OTILES; ++i) {
            int cc = i * 8 + 2 * c;
            part[g * (HD + 2) + cc] = o[i][0];
            part[g * (HD + 2) + cc + 1] = o[i][1];
            part[(g + 8) * (HD + 2) + cc] = o[i][2];
            part[(g + 8) * (HD + 2) + cc + 1] = o[i][3];
        }
        if (c == 0) {
            part[g * (HD + 2) + HD] = rows.ma;
            part[g * (HD + 2) + HD + 1] = rows.la;
            part[(g + 8) * (HD + 2) + HD] = rows.mb;
            part[(g + 8) * (HD + 2) + HD + 1] = rows.lb;
        }
        __syncthreads();
        if (warp != 0) return;
        const float* all = reinterpret_cast<const float*>(&ks_buf[0][0]);
        float fa[4], fb[4];
        float mxa = NEG_INF, mxb = NEG_INF;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            mxa = fmaxf(mxa, all[(w * 16 + g) * (HD + 2) + HD]);
            mxb = fmaxf(mxb, all[(w * 16 + g + 8) * (HD + 2) + HD]);
        }
        float la = 0.f, lb = 0.f;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            fa[w] = exp2_ftz((all[(w * 16 + g) * (HD + 2) + HD] - mxa) * sc);
            fb[w] = exp2_ftz((all[(w * 16 + g + 8) * (HD + 2) + HD] - mxb) * sc);
            la += fa[w] * all[(w * 16 + g) * (HD + 2) + HD + 1];
            lb += fb[w] * all[(w * 16 + g + 8) * (HD + 2) + HD + 1];
        }
        rows.la = la;
        rows.lb = lb;
#pragma unroll
        for (int i = 0; i < OTILES; ++i) {
            int cc = i * 8 + 2 * c;
            o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                const float* ra = all + (w * 16 + g) * (HD + 2) + cc;
                const float* rb = all + (w * 16 + g + 8) * (HD + 2) + cc;
                o[i][0] += fa[w] * ra[0];
                o[i][1] += fa[w] * ra[1];
                o[i][2] += fb[w] * rb[0];
                o[i][3] += fb[w] * rb[1];
            }
        }
    }
    store_rows<OTILES>(o, rows, out, s, qa, qb, q0, row0, col, q_width, c);
}

// 64-wide heads: at most 128 registers a thread, so that four blocks (16 warps) share an SM
// instead of three (131 registers unbounded; 56 bytes spill): 5-6% faster on the engine's
// passes (H200, .bench/attn). 128-wide heads keep their registers (bounded they are slower).
extern "C" __global__ void __launch_bounds__(128, 4)
attention_mma_f16_hd64(const half_t* pre, const u8* pre_types, const half_t* own,
                       const u8* own_types, half_t* out, const TileWork* tiles, int q_width,
                       int kv_width, int group, int ld, float scale, float penalty) {
    attention_mma<64, 64, false>(pre, pre_types, own, own_types, out, tiles, q_width,
                                 kv_width, group, ld, scale, penalty);
}
extern "C" __global__ void __launch_bounds__(128, 4)
attention_mma_split_f16_hd64(const half_t* pre, const u8* pre_types, const half_t* own,
                             const u8* own_types, half_t* out, const TileWork* tiles,
                             int q_width, int kv_width, int group, int ld, float scale,
                             float penalty) {
    attention_mma<64, 64, true>(pre, pre_types, own, own_types, out, tiles, q_width,
                                kv_width, group, ld, scale, penalty);
}
extern "C" __global__ void __launch_bounds__(128)
attention_mma_f16_hd128(const half_t* pre, const u8* pre_types, const half_t* own,
                        const u8* own_types, half_t* out, const TileWork* tiles, int q_width,
                        int kv_width, int group, int ld, float scale, float penalty) {
    attention_mma<128, 32, false>(pre, pre_types, own, own_types, out, tiles, q_width,
                                  kv_width, group, ld, scale, penalty);
}
