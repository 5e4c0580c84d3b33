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

// tiles: per block, (seq, first query, output row of the first query) triples: a pass's own
// tiles write query i at row own_start + i; the final block's last-row tiles (first query =
// the last, one valid query) write sequence s's at row s.
//
// SPLIT (tiles of at most 16 queries: short suffixes, last rows): the four warps take the
// same 16 queries and each a quarter of every key tile (16 keys), so no warp idles; their
// partial softmax states (max, sum, output) are merged through shared memory at the end. Two shared-memory stages: the next K/V tile
// loads (cp.async) while the current one is computed. Shared rows are HD + 8 halves long
// (144 or 272 bytes: ldmatrix and LDS.32 stay free of bank conflicts).
template <int HD, int KT, bool SPLIT>
__device__ __forceinline__ void attention_mma(
    const half_t* __restrict__ pre, const u8* __restrict__ pre_types,
    const half_t* __restrict__ own, const u8* __restrict__ own_types, half_t* __restrict__ out,
    const SeqInfo* __restrict__ seqs, const int* __restrict__ tiles, int q_width, int kv_width,
    int group, int ld, float scale, float penalty) {
    constexpr int SROW = HD + 8;
    constexpr int KSTEPS = HD / 16;  // k-steps of Q K^T over the head width
    constexpr int OTILES = HD / 8;   // 8-wide column tiles of the output
    constexpr int WK = SPLIT ? 16 : KT;  // keys of a tile each warp computes
    constexpr int NTILES = WK / 8;         // 8-key column tiles of the scores
    constexpr int CHUNKS = HD / 8;   // 16-byte chunks of a K or V row
    __shared__ __align__(16) half_t ks_buf[2][KT * SROW];
    __shared__ __align__(16) half_t vs_buf[2][KT * SROW];
    __shared__ u8 kt_buf[2][KT];

    const int seq = tiles[3 * blockIdx.x], q0 = tiles[3 * blockIdx.x + 1];
    const int row0 = tiles[3 * blockIdx.x + 2];
    const int head = blockIdx.y;
    const SeqInfo s = seqs[seq];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, c = lane & 3;
    const int col = head * HD;
    const int kv_col = (head / group) * HD;

    // This warp's queries: own indices qw + g and qw + g + 8; its keys of a tile from kbase.
    const int qw = SPLIT ? q0 : q0 + warp * 16;
    const int kbase = SPLIT ? warp * 16 : 0;
    const int qa = qw + g, qb = qw + g + 8;
    const bool va = qa < s.own_len, vb = qb < s.own_len;
    unsigned qf[KSTEPS][4];  // [k-step][a0..a3]
    {
        const half_t* ra = own + (size_t)(s.own_start + (va ? qa : 0)) * ld + col;
        const half_t* rb = own + (size_t)(s.own_start + (vb ? qb : 0)) * ld + col;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            int k0 = kk * 16 + 2 * c;
            qf[kk][0] = va ? *(const unsigned*)(ra + k0) : 0u;
            qf[kk][1] = vb ? *(const unsigned*)(rb + k0) : 0u;
            qf[kk][2] = va ? *(const unsigned*)(ra + k0 + 8) : 0u;
            qf[kk][3] = vb ? *(const unsigned*)(rb + k0 + 8) : 0u;
        }
    }
    const u8 ta = own_types[s.own_start + (va ? qa : 0)];
    const u8 tb = own_types[s.own_start + (vb ? qb : 0)];

    float o[OTILES][4];
#pragma unroll
    for (int i = 0; i < OTILES; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float ma = NEG_INF, mb = NEG_INF, la = 0.f, lb = 0.f;
    const float log2e = 1.4426950408889634f;
    const float sc = scale * log2e, pen = penalty * log2e;

    const int n_keys = s.pre_len + s.own_len;
    const int last_q = min(q0 + QUERY_TILE, s.own_len) - 1;
    const int key_end = min(n_keys, s.pre_len + last_q + 1);
    // Warps whose 16 queries are all past the sequence's end only help load the tiles.
    const bool active = qw < s.own_len;

    // Tile j0's K and V rows into stage `st` by cp.async (rows past the keys zero-filled),
    // and its key types.
    auto load_tile = [&](int st, int j0) {
        for (int t = threadIdx.x; t < KT * CHUNKS; t += 128) {
            int r = t / CHUNKS, ch = t % CHUNKS;
            int j = j0 + r;
            // Key row j's key head (its value head kv_width further on).
            const half_t* k = own;
            bool valid = j < n_keys;
            if (valid)
                k = j < s.pre_len
                        ? pre + (size_t)(s.pre_start + j) * (2 * kv_width) + kv_col
                        : own + (size_t)(s.own_start + j - s.pre_len) * ld + q_width + kv_col;
            cp_async16(smem_addr(ks_buf[st] + r * SROW + ch * 8), k + ch * 8, valid);
            cp_async16(smem_addr(vs_buf[st] + r * SROW + ch * 8), k + kv_width + ch * 8, valid);
        }
        for (int r = threadIdx.x; r < KT; r += 128) {
            int j = j0 + r;
            u8 t = 0;
            if (j < n_keys)
                t = j < s.pre_len ? pre_types[s.pre_start + j]
                                  : own_types[s.own_start + j - s.pre_len];
            kt_buf[st][r] = t;
        }
        cp_async_commit();
    };
    load_tile(0, 0);
    for (int j0 = 0, st = 0; j0 < key_end; j0 += KT, st ^= 1) {
        // The next tile loads while this one is computed.
        if (j0 + KT < key_end) {
            load_tile(st ^ 1, j0 + KT);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const half_t* ks = ks_buf[st];
        const half_t* vs = vs_buf[st];
        const u8* kt = kt_buf[st];
        if (!active) {
            __syncthreads();
            continue;
        }

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
        // Scale, mask (causal + calibration), in log2 units; row maxima.
        float mxa = ma, mxb = mb;
#pragma unroll
        for (int nt = 0; nt < NTILES; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                int r = kbase + nt * 8 + 2 * c + e;
                int j = j0 + r;
                u8 tk = kt[r];
                float x = sacc[nt][e] * sc + (tk != ta ? pen : 0.f);
                x = (j < n_keys && j <= s.pre_len + qa) ? x : NEG_INF;
                sacc[nt][e] = x;
                mxa = fmaxf(mxa, x);
                float y = sacc[nt][2 + e] * sc + (tk != tb ? pen : 0.f);
                y = (j < n_keys && j <= s.pre_len + qb) ? y : NEG_INF;
                sacc[nt][2 + e] = y;
                mxb = fmaxf(mxb, y);
            }
        }
        mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 1));
        mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, 2));
        mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 1));
        mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, 2));
        // A row whose keys are all masked so far keeps max -inf: use 0 so exp2 gives 0, not NaN.
        const float ba = mxa == NEG_INF ? 0.f : mxa, bb = mxb == NEG_INF ? 0.f : mxb;
        const float corr_a = exp2f(ma - ba), corr_b = exp2f(mb - bb);
        ma = mxa;
        mb = mxb;
        float sa = 0.f, sb = 0.f;
        unsigned pf[WK / 16][4];  // P as A fragments, per 16-key step
#pragma unroll
        for (int nt = 0; nt < NTILES; ++nt) {
            float p0 = exp2f(sacc[nt][0] - ba), p1 = exp2f(sacc[nt][1] - ba);
            float p2 = exp2f(sacc[nt][2] - bb), p3 = exp2f(sacc[nt][3] - bb);
            sa += p0 + p1;
            sb += p2 + p3;
            int kk = nt >> 1, hi = nt & 1;
            pf[kk][hi * 2 + 0] = pack_half2(p0, p1);
            pf[kk][hi * 2 + 1] = pack_half2(p2, p3);
        }
        la = la * corr_a + sa;
        lb = lb * corr_b + sb;
#pragma unroll
        for (int i = 0; i < OTILES; ++i) {
            o[i][0] *= corr_a;
            o[i][1] *= corr_a;
            o[i][2] *= corr_b;
            o[i][3] *= corr_b;
        }
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
        __syncthreads();
    }

    // Row sums over the quad, then write.
    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
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
            part[g * (HD + 2) + HD] = ma;
            part[g * (HD + 2) + HD + 1] = la;
            part[(g + 8) * (HD + 2) + HD] = mb;
            part[(g + 8) * (HD + 2) + HD + 1] = lb;
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
        la = lb = 0.f;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            fa[w] = exp2f(all[(w * 16 + g) * (HD + 2) + HD] - mxa);
            fb[w] = exp2f(all[(w * 16 + g + 8) * (HD + 2) + HD] - mxb);
            la += fa[w] * all[(w * 16 + g) * (HD + 2) + HD + 1];
            lb += fb[w] * all[(w * 16 + g + 8) * (HD + 2) + HD + 1];
        }
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
    const float ia = va ? 1.f / la : 0.f, ib = vb ? 1.f / lb : 0.f;
#pragma unroll
    for (int i = 0; i < OTILES; ++i) {
        int cc = col + i * 8 + 2 * c;
        if (va)
            *(unsigned*)(out + (size_t)(row0 + qa - q0) * q_width + cc) =
                pack_half2(o[i][0] * ia, o[i][1] * ia);
        if (vb)
            *(unsigned*)(out + (size_t)(row0 + qb - q0) * q_width + cc) =
                pack_half2(o[i][2] * ib, o[i][3] * ib);
    }
}

// 64-wide heads: at most 128 registers a thread, so that four blocks (16 warps) share an SM
// instead of three (131 registers unbounded; 56 bytes spill): 5-6% faster on the engine's
// passes (H200, .bench/attn). 128-wide heads keep their registers (bounded they are slower).
extern "C" __global__ void __launch_bounds__(128, 4)
attention_mma_f16_hd64(const half_t* pre, const u8* pre_types, const half_t* own,
                       const u8* own_types, half_t* out, const SeqInfo* seqs, const int* tiles,
                       int q_width, int kv_width, int group, int ld, float scale, float penalty) {
    attention_mma<64, 64, false>(pre, pre_types, own, own_types, out, seqs, tiles, q_width,
                                 kv_width, group, ld, scale, penalty);
}
extern "C" __global__ void __launch_bounds__(128, 4)
attention_mma_split_f16_hd64(const half_t* pre, const u8* pre_types, const half_t* own,
                             const u8* own_types, half_t* out, const SeqInfo* seqs,
                             const int* tiles, int q_width, int kv_width, int group, int ld,
                             float scale, float penalty) {
    attention_mma<64, 64, true>(pre, pre_types, own, own_types, out, seqs, tiles, q_width,
                                kv_width, group, ld, scale, penalty);
}
extern "C" __global__ void __launch_bounds__(128)
attention_mma_f16_hd128(const half_t* pre, const u8* pre_types, const half_t* own,
                        const u8* own_types, half_t* out, const SeqInfo* seqs, const int* tiles,
                        int q_width, int kv_width, int group, int ld, float scale, float penalty) {
    attention_mma<128, 32, false>(pre, pre_types, own, own_types, out, seqs, tiles, q_width,
                                  kv_width, group, ld, scale, penalty);
}
