// The engine's Hopper attention kernel, compiled after attention.cu in the same NVRTC program
// (its fragment layouts, softmax steps and cp.async helpers are in scope).
//
// Hopper (compiled only for compute_90a): the 64-query tiles of 64-wide heads on warpgroup
// MMA (wgmma), one warpgroup (the block's four warps) a tile. S = Q K^T and O += P V are each
// four wgmma.m64n64k16: A from registers (the Q and P fragments, laid out per warp as
// mma.m16n8k16's A), B from shared memory through a descriptor; wgmma's f32 accumulator is,
// per warp, mma.m16n8's C over eight column tiles, so attention.cu's softmax step serves as it
// is. Pipelined as FlashAttention-3 within a warpgroup: iteration t issues S(t+1) and then
// P(t) V(t), waits for S(t+1) alone and runs its softmax while P V is still on the tensor
// cores, then waits for P V and rescales O. Three stages of shared memory (tile t's V, tile
// t+1's K, tile t+2 loading), dynamic: WGMMA_SMEM_BYTES, defined by the compiling program
// (kernels.rs owns the launch's size; the check below says whether it is enough).
//
// K and V tiles are 64 keys x 64 halves (128-byte rows, no padding) in the 128-byte swizzle
// wgmma reads: 16-byte chunk ch of row r is stored at chunk ch ^ (r % 8), tiles 1024-byte
// aligned. K is B "K-major" (a key's head dims contiguous), V "MN-major" (transposed).
//
// ptxas keeps wgmma asynchronous only where no register an in-flight wgmma reads or writes is
// touched before its wait, and no wgmma sits under a condition; else it serialises them all
// (info C7514, which scripts/kernel-report.sh fails on). Hence the softmax only reads the
// scores, the next probabilities go to their own registers (take_fragments), and the last
// tile's value product is peeled out of the loop.
// (A host compiler pass, where __CUDA_ARCH__ is not defined, sees it too: its declaration.)
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_STAGE_HALVES (64 * 64)
// K and V stages, key types, slack to align the first stage to 1024 bytes.
static_assert(WGMMA_SMEM_BYTES >= 3 * 2 * WGMMA_STAGE_HALVES * 2 + 3 * 64 * 4 + 1024,
              "WGMMA_SMEM_BYTES too small for the wgmma attention's stages");

// A shared-memory matrix descriptor for a 1024-aligned tile in the 128-byte swizzle. Both
// byte offsets are 1024 (eight rows of 128 bytes): a K-major swizzled operand ignores the
// leading one, and an MN-major one 64 halves wide has a single atom along N.
__device__ __forceinline__ unsigned long long wgmma_desc(const void* tile) {
    const unsigned long long addr = smem_addr(tile);
    return ((addr & 0x3FFFF) >> 4) | ((unsigned long long)(1024 >> 4) << 16) |
           ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins an accumulator's registers at this point: the compiler may not move their reads or
// writes across it (wgmma reads and writes them asynchronously).
__device__ __forceinline__ void fence_accumulator(float (&d)[8][4]) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}
// Stores by ordinary (generic-proxy) writes made visible to wgmma's (async-proxy) reads.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// D[64 x 64] (+)= A[64 x 16] (registers) B[16 x 64] (descriptor); TRANS_B: B is MN-major.
template <int TRANS_B>
__device__ __forceinline__ void wgmma_64x64x16(float (&d)[8][4], const unsigned (&a)[4],
                                               unsigned long long desc, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %38, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %37;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]),
          "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]),
          "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]),
          "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
          "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]),
          "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
          "+f"(d[7][2]), "+f"(d[7][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "n"(TRANS_B), "r"(accumulate));
}

// D (+)= A[64 x 64] B[64 x 64] as four k-steps of 16, issued and committed, not waited for:
// A's fragments per k-step, B's descriptor `step` (16-byte units) further each k-step;
// `accumulate` false overwrites D.
template <int TRANS_B>
__device__ __forceinline__ void wgmma_64x64x64(float (&d)[8][4], const unsigned (&a)[4][4],
                                               unsigned long long desc, int step, bool accumulate) {
    fence_accumulator(d);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
        wgmma_64x64x16<TRANS_B>(d, a[kk], desc + step * kk, accumulate || kk > 0);
    wgmma_commit();
}

// P's A fragments as new registers: the value product in flight reads `pf` while the next
// tile's softmax writes `next`, and `pf` takes `next` only after the product is waited for
// (a plain assignment would let the compiler merge the two sets and ptxas serialise wgmma).
__device__ __forceinline__ void take_fragments(unsigned (&pf)[4][4], const unsigned (&next)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("mov.b32 %0, %1;" : "=r"(pf[i][e]) : "r"(next[i][e]));
}

// Four blocks an SM (16 warps): ptxas fits the kernel in 128 registers without spilling, and
// the shared memory (4 x WGMMA_SMEM_BYTES) fits; 1-2% faster than three blocks at 168
// registers (H100, docs/bench/extract-acceptance-h100-2026-12-07.log).
extern "C" __global__ void __launch_bounds__(128, 4)
attention_wgmma_f16_hd64(const half_t* __restrict__ pre, const u8* __restrict__ pre_types,
                         const half_t* __restrict__ own, const u8* __restrict__ own_types,
                         half_t* __restrict__ out, const TileWork* __restrict__ tiles,
                         int q_width, int kv_width, int group, int ld, float scale,
                         float penalty) {
    constexpr int HD = 64, KT = 64, STAGE = WGMMA_STAGE_HALVES;
    extern __shared__ unsigned char wgmma_smem[];
    half_t* ks = reinterpret_cast<half_t*>(
        wgmma_smem + ((1024 - (smem_addr(wgmma_smem) & 1023)) & 1023));
    half_t* vs = ks + 3 * STAGE;
    float* kts = reinterpret_cast<float*>(vs + 3 * STAGE);

    const TileSite site = tile_site(tiles, group, HD);
    const SeqInfo s = site.s;
    const int q0 = site.q0, row0 = site.row0, col = site.col, kv_col = site.kv_col;
    const int warp = site.warp, g = site.g, c = site.c;
    // Every warp runs every wgmma (they are warpgroup-wide): rows past the sequence compute
    // on zero queries and are not written.
    const int qw = q0 + warp * 16, qa = qw + g, qb = qa + 8;
    unsigned qf[HD / 16][4];
    u8 ta, tb;
    load_queries<HD>(qf, ta, tb, own, own_types, s, qa, qb, col, ld, c);
    RowPair rows = start_rows(s, qa, qb, ta, tb, penalty / scale);

    float o[8][4], sacc[8][4];
    unsigned pf[4][4], pf_next[4][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    const float sc = scale * 1.4426950408889634f;  // the scale in log2 units
    float corr_a, corr_b;

    const int n_keys = s.pre_len + s.own_len;
    const int last_q = min(q0 + QUERY_TILE, s.own_len) - 1;
    const int n_tiles = (min(n_keys, s.pre_len + last_q + 1) + KT - 1) / KT;

    // Tile t's K and V rows (swizzled: a thread's rows are r0 + 16 i, so its chunk's place
    // in the swizzle is the same in each) into stage t % 3, by cp.async; returns the thread's
    // key type of the tile, fetched (stored an iteration later: store_key_type).
    const KeyLoader<HD, KT> keys(pre, own, s, kv_width, q_width, ld, kv_col);
    static_assert(KeyLoader<HD, KT>::STEP % 8 == 0, "a thread's rows share their swizzle");
    const int at = keys.r0 * HD + ((keys.ch ^ (keys.r0 & 7)) * 8);
    auto load_tile = [&](int t) {
        keys.load(smem_addr(ks + (t % 3) * STAGE + at), smem_addr(vs + (t % 3) * STAGE + at),
                  HD * 2, t * KT);
        cp_async_commit();
        return fetch_key_type<KT>(pre_types, own_types, s, t * KT, n_keys);
    };
    // S = Q K(t)^T (K-major: a k-step is 32 bytes on), issued and committed, not waited for.
    auto issue_scores = [&](int t) {
        wgmma_64x64x64<0>(sacc, qf, wgmma_desc(ks + (t % 3) * STAGE), 2, false);
    };
    // O += P(t) V(t) (MN-major: a k-step is 16 rows, 2 KiB on), issued and committed.
    auto issue_values = [&](int t) {
        wgmma_64x64x64<1>(o, pf, wgmma_desc(vs + (t % 3) * STAGE), 128, true);
    };
    // Tile t's softmax on the scores waited for, into pf_next.
    auto softmax = [&](int t) {
        fence_accumulator(sacc);
        softmax_step_any<8>(needs_mask(s, t * KT, KT, qw), sacc, rows, kts + (t % 3) * KT, 0,
                            t * KT, c, n_keys, sc, pf_next, corr_a, corr_b);
    };

    store_key_type<KT>(kts, load_tile(0));
    u8 next_type = 0;  // the key type of the tile loaded last, not yet stored
    if (n_tiles > 1) {
        next_type = load_tile(1);
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    fence_proxy_async();
    __syncthreads();
    issue_scores(0);
    wgmma_wait<0>();
    softmax(0);
    take_fragments(pf, pf_next);
    // Every tile but the last: S(t+1) and P(t) V(t) issued together; S(t+1)'s softmax runs
    // while P V is on the tensor cores. No wgmma under a condition (ptxas would serialise).
    int t = 0;
    for (; t + 1 < n_tiles; ++t) {
        // Tile t+1's key types (fetched an iteration ago), published by the barrier below.
        store_key_type<KT>(kts + ((t + 1) % 3) * KT, next_type);
        cp_async_wait<0>();
        fence_proxy_async();
        // Tile t+1 is in; every warp is done with tile t-1's stage, which tile t+2 takes.
        __syncthreads();
        if (t + 2 < n_tiles) next_type = load_tile(t + 2);
        issue_scores(t + 1);
        issue_values(t);
        wgmma_wait<1>();  // S(t+1); P(t) V(t) may still run
        softmax(t + 1);
        wgmma_wait<0>();
        fence_accumulator(o);
        scale_rows<8>(o, corr_a, corr_b);
        take_fragments(pf, pf_next);
    }
    issue_values(t);
    wgmma_wait<0>();
    fence_accumulator(o);
    sum_over_quad(rows);
    store_rows<8>(o, rows, out, s, qa, qb, q0, row0, col, q_width, c);
}
#endif
