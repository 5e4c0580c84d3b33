// The SCA (crate::sca) fused for the GPU, f32 throughout, for N = SCA_N variables (a
// compile-time constant, so that a row's N values live in registers; sca.rs compiles one
// program per N). A window's input is its GT and HD last-token states, N rows of d values each,
// picked from the chunk's states by row index; a thread owns one of the window's d embedding
// dimensions (the SCA's "positions"), so every per-position step (the LayerNorms over N, the
// N→N projections, the feed-forward N→d_ff→N) runs in that thread's registers, and only the
// attention over the d positions needs the window's other threads: its keys and values pass
// through shared memory a tile at a time with an online softmax, so the [d, d] score matrix is
// never stored. Buffers of a window are laid out [N, d] (a column per variable), so that
// neighbouring threads touch neighbouring addresses; the output is the stored embedding,
// [windows, N, d].

#ifndef SCA_N
#error "SCA_N (the SCA's variable count) must be defined"
#endif

#define SCA_THREADS 128
#define SCA_KEY_TILE 32
#define SCA_NEG_INF (-__int_as_float(0x7f800000))

// PyTorch's LayerNorm over the N values of `x` in place: population variance, eps 1e-5.
__device__ __forceinline__ void sca_layer_norm(float (&x)[SCA_N], const float* __restrict__ gamma,
                                               const float* __restrict__ beta) {
    float mean = 0.f;
#pragma unroll
    for (int v = 0; v < SCA_N; ++v) mean += x[v];
    mean /= (float)SCA_N;
    float var = 0.f;
#pragma unroll
    for (int v = 0; v < SCA_N; ++v) {
        float c = x[v] - mean;
        var += c * c;
    }
    var /= (float)SCA_N;
    float inv = 1.f / sqrtf(var + 1e-5f);
#pragma unroll
    for (int v = 0; v < SCA_N; ++v) x[v] = (x[v] - mean) * inv * __ldg(gamma + v) + __ldg(beta + v);
}

// `out[c] = bias[c] + Σ_v x[v] · weight[c, v]` (a PyTorch Linear, weight [out, in]).
__device__ __forceinline__ void sca_linear(const float (&x)[SCA_N], const float* __restrict__ weight,
                                           const float* __restrict__ bias, float (&out)[SCA_N]) {
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) {
        float acc = __ldg(bias + c);
#pragma unroll
        for (int v = 0; v < SCA_N; ++v) acc = fmaf(x[v], __ldg(weight + c * SCA_N + v), acc);
        out[c] = acc;
    }
}

// The SCA's weights, one device buffer (crate::sca's `Sca::fused_layout` writes them in this
// order).
struct ScaWeights {
    const float *norm_attn_gamma, *norm_attn_beta;
    const float *w_q, *b_q, *w_k, *b_k, *w_v, *b_v, *w_out, *b_out;
    const float *norm_ffn_gamma, *norm_ffn_beta;
    const float *w_ff_in, *b_ff_in, *w_ff_out, *b_ff_out;
};

__device__ __forceinline__ ScaWeights sca_weights(const float* w, int d_ff) {
    const size_t n = SCA_N, nn = SCA_N * SCA_N, nf = (size_t)SCA_N * d_ff;
    // Each array in turn: where it starts, then past it.
    auto next = [&w](size_t count) {
        const float* start = w;
        w += count;
        return start;
    };
    return ScaWeights{next(n), next(n), next(nn), next(n), next(nn), next(n), next(nn), next(n),
                      next(nn), next(n), next(n), next(n), next(nf), next(d_ff), next(nf), next(n)};
}

// Per window w (blockIdx.y) and position r: the normed GT row `qn`, and q, k, v. `gt_rows` and
// `hd_rows` hold, per window, the states rows of its N variables' GT and HD prompts.
extern "C" __global__ void __launch_bounds__(SCA_THREADS)
sca_project(const float* __restrict__ states, const int* __restrict__ gt_rows,
            const int* __restrict__ hd_rows, int d, const float* __restrict__ weights, int d_ff,
            float* __restrict__ qn, float* __restrict__ q, float* __restrict__ k,
            float* __restrict__ v) {
    const int r = blockIdx.x * SCA_THREADS + threadIdx.x;
    const int w = blockIdx.y;
    if (r >= d) return;
    const ScaWeights s = sca_weights(weights, d_ff);
    float gt[SCA_N], hd[SCA_N];
#pragma unroll
    for (int i = 0; i < SCA_N; ++i) {
        gt[i] = states[(size_t)__ldg(gt_rows + w * SCA_N + i) * d + r];
        hd[i] = states[(size_t)__ldg(hd_rows + w * SCA_N + i) * d + r];
    }
    sca_layer_norm(gt, s.norm_attn_gamma, s.norm_attn_beta);
    sca_layer_norm(hd, s.norm_attn_gamma, s.norm_attn_beta);
    float out[SCA_N];
    const size_t at = (size_t)w * SCA_N * d + r;
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) qn[at + (size_t)c * d] = gt[c];
    sca_linear(gt, s.w_q, s.b_q, out);
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) q[at + (size_t)c * d] = out[c];
    sca_linear(hd, s.w_k, s.b_k, out);
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) k[at + (size_t)c * d] = out[c];
    sca_linear(hd, s.w_v, s.b_v, out);
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) v[at + (size_t)c * d] = out[c];
}

// Per window w (blockIdx.y) and position r: softmax(q kᵀ · scale) v over the window's d
// positions, the output projection, S = LN_f(qn − O), and out = S + FF(S) (erf GELU).
extern "C" __global__ void __launch_bounds__(SCA_THREADS)
sca_attend(const float* __restrict__ qn, const float* __restrict__ q,
           const float* __restrict__ k, const float* __restrict__ v, int d, float scale,
           const float* __restrict__ weights, int d_ff, float* __restrict__ out) {
    __shared__ float key_tile[SCA_N][SCA_KEY_TILE];
    __shared__ float value_tile[SCA_N][SCA_KEY_TILE];
    const int r = blockIdx.x * SCA_THREADS + threadIdx.x;
    const int w = blockIdx.y;
    const bool live = r < d;
    const size_t window = (size_t)w * SCA_N * d;
    float query[SCA_N], acc[SCA_N];
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) {
        query[c] = live ? q[window + (size_t)c * d + r] : 0.f;
        acc[c] = 0.f;
    }
    float running_max = SCA_NEG_INF, running_sum = 0.f;
    for (int j0 = 0; j0 < d; j0 += SCA_KEY_TILE) {
        const int keys = min(SCA_KEY_TILE, d - j0);
        __syncthreads();
        for (int i = threadIdx.x; i < SCA_N * SCA_KEY_TILE; i += SCA_THREADS) {
            const int c = i / SCA_KEY_TILE, j = i % SCA_KEY_TILE;
            const bool in = j < keys;
            key_tile[c][j] = in ? k[window + (size_t)c * d + j0 + j] : 0.f;
            value_tile[c][j] = in ? v[window + (size_t)c * d + j0 + j] : 0.f;
        }
        __syncthreads();
        float score[SCA_KEY_TILE];
        float tile_max = SCA_NEG_INF;
#pragma unroll
        for (int j = 0; j < SCA_KEY_TILE; ++j) {
            float dot = 0.f;
#pragma unroll
            for (int c = 0; c < SCA_N; ++c) dot = fmaf(query[c], key_tile[c][j], dot);
            score[j] = j < keys ? dot * scale : SCA_NEG_INF;
            tile_max = fmaxf(tile_max, score[j]);
        }
        const float new_max = fmaxf(running_max, tile_max);
        const float rescale = expf(running_max - new_max);
        running_sum *= rescale;
#pragma unroll
        for (int c = 0; c < SCA_N; ++c) acc[c] *= rescale;
#pragma unroll
        for (int j = 0; j < SCA_KEY_TILE; ++j) {
            const float p = expf(score[j] - new_max);
            running_sum += p;
#pragma unroll
            for (int c = 0; c < SCA_N; ++c) acc[c] = fmaf(p, value_tile[c][j], acc[c]);
        }
        running_max = new_max;
    }
    if (!live) return;
    const ScaWeights s = sca_weights(weights, d_ff);
    const float inv_sum = 1.f / running_sum;
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) acc[c] *= inv_sum;
    float x[SCA_N];
    sca_linear(acc, s.w_out, s.b_out, x);
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) x[c] = qn[window + (size_t)c * d + r] - x[c];
    sca_layer_norm(x, s.norm_ffn_gamma, s.norm_ffn_beta);
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) acc[c] = __ldg(s.b_ff_out + c);
    for (int j = 0; j < d_ff; ++j) {
        float h = __ldg(s.b_ff_in + j);
#pragma unroll
        for (int c = 0; c < SCA_N; ++c) h = fmaf(x[c], __ldg(s.w_ff_in + (size_t)j * SCA_N + c), h);
        h = 0.5f * h * (1.f + erff(h * 0.70710678118654752f));
#pragma unroll
        for (int c = 0; c < SCA_N; ++c) acc[c] = fmaf(h, __ldg(s.w_ff_out + (size_t)c * d_ff + j), acc[c]);
    }
#pragma unroll
    for (int c = 0; c < SCA_N; ++c) out[window + (size_t)c * d + r] = x[c] + acc[c];
}
