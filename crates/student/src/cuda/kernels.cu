// The student engine's kernels (f32 throughout). Matrix products are cuBLAS calls made from
// Rust; these are the element-wise, normalisation, attention-softmax, loss and optimiser
// steps between them. Tensors of both branches are stacked: [K = 2, rows, width], branch 0
// the time-series one. Dropout keeps element `i` of a draw keyed by `key` when a hash of
// (key, i) falls below `keep` (so a mask is recomputed, never stored), and scales it by
// 1 / keep; `keep >= 1` turns dropout off.

typedef unsigned long long u64;

#define WARP 32
// Blocks of every reduction that leaves per-block partial sums (losses, gradient norm).
#define PARTIAL_BLOCKS 256
#define REDUCE_THREADS 256

__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// The factor dropout applies to element `i` of the draw keyed by `key`: 1 / keep or 0.
__device__ __forceinline__ float drop_factor(u64 key, u64 i, float keep) {
    if (keep >= 1.0f) return 1.0f;
    u64 r = mix64(key + (i + 1) * 0x9E3779B97F4A7C15ULL);
    float u = (float)(r >> 40) * (1.0f / 16777216.0f);
    return u < keep ? 1.0f / keep : 0.0f;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

// Sum of `v` over the block (REDUCE_THREADS threads), valid in thread 0; fixed order.
__device__ float block_sum(float v) {
    __shared__ float warps[REDUCE_THREADS / WARP];
    v = warp_sum(v);
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    if (lane == 0) warps[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.x == 0)
        for (int w = 0; w < REDUCE_THREADS / WARP; ++w) total += warps[w];
    __syncthreads();
    return total;
}

// Loss of a difference and its derivative: 0 smooth L1 (beta 1), 1 squared, 2 absolute.
__device__ __forceinline__ float loss_value(int kind, float d) {
    float a = fabsf(d);
    if (kind == 1) return d * d;
    if (kind == 2) return a;
    float m = fminf(a, 1.0f);
    return 0.5f * m * m + (a - m);
}
__device__ __forceinline__ float loss_grad(int kind, float d) {
    float s = (d > 0.0f) - (d < 0.0f);
    if (kind == 1) return 2.0f * d;
    if (kind == 2) return s;
    return fabsf(d) < 1.0f ? d : s;
}

// RevIN over time of the batch's windows: x_all [windows, L, N]; row m = b·N + n of `xt`
// [B·N, L] is window idx[b]'s variable n normalised (population variance, eps 1e-5), and
// `mean`/`stdv` [B·N] keep the statistics. One warp per row.
extern "C" __global__ void revin_rows(const float* x_all, const int* idx, int rows, int len,
                                      int vars, float* xt, float* mean, float* stdv) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP, lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int b = row / vars, n = row % vars;
    const float* x = x_all + (size_t)idx[b] * len * vars + n;
    float s = 0.0f;
    for (int l = lane; l < len; l += WARP) s += x[(size_t)l * vars];
    float mu = warp_sum(s) / len;
    float q = 0.0f;
    for (int l = lane; l < len; l += WARP) {
        float c = x[(size_t)l * vars] - mu;
        q += c * c;
    }
    float sd = sqrtf(warp_sum(q) / len + 1e-5f);
    for (int l = lane; l < len; l += WARP) xt[(size_t)row * len + l] = (x[(size_t)l * vars] - mu) / sd;
    if (lane == 0) {
        mean[row] = mu;
        stdv[row] = sd;
    }
}

// dst row r = src row idx[r] (rows of `width` values).
extern "C" __global__ void gather_rows(const float* src, const int* idx, int rows, int width,
                                       float* dst) {
    size_t total = (size_t)rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / width, c = i % width;
        dst[i] = src[(size_t)idx[r] * width + c];
    }
}

// x [2, rows, width] += (b0 for branch 0, b1 for branch 1), each [width].
extern "C" __global__ void add_bias2(float* x, const float* b0, const float* b1, int rows,
                                     int width) {
    size_t half = (size_t)rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < 2 * half;
         i += (size_t)gridDim.x * blockDim.x) {
        int c = i % width;
        x[i] += i < half ? b0[c] : b1[c];
    }
}

// Between tokens [K, B·N, C] and heads [K, B, heads, N, hd]. to_heads = 1: dst (heads) =
// src (tokens) + bias [K, C] (bias may be null); 0: dst (tokens) = src (heads).
extern "C" __global__ void heads_layout(const float* src, const float* bias, float* dst, int to_heads,
                                        int k_branches, int batch, int vars, int heads, int hd) {
    int c_width = heads * hd;
    size_t total = (size_t)k_branches * batch * vars * c_width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        // i indexes the heads layout: ((((k·B + b)·heads + h)·N + n)·hd + d)
        int d = i % hd;
        size_t t = i / hd;
        int n = t % vars;
        t /= vars;
        int h = t % heads;
        t /= heads;
        int b = t % batch;
        int k = t / batch;
        size_t token = (((size_t)k * batch + b) * vars + n) * c_width + h * hd + d;
        if (to_heads) {
            float v = src[token];
            if (bias) v += bias[k * c_width + h * hd + d];
            dst[i] = v;
        } else {
            dst[token] = src[i];
        }
    }
}

// Row-wise softmax of scores [rows, N] into `p`, and its dropout into `pd`. One warp per row.
extern "C" __global__ void softmax_dropout(const float* s, float* p, float* pd, int rows, int n,
                                           u64 key, float keep) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP, lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const float* x = s + (size_t)row * n;
    float mx = -3.402823466e38f;
    for (int j = lane; j < n; j += WARP) mx = fmaxf(mx, x[j]);
    for (int o = WARP / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, o));
    float sum = 0.0f;
    for (int j = lane; j < n; j += WARP) sum += expf(x[j] - mx);
    sum = warp_sum(sum);
    for (int j = lane; j < n; j += WARP) {
        size_t i = (size_t)row * n + j;
        float v = expf(x[j] - mx) / sum;
        p[i] = v;
        pd[i] = v * drop_factor(key, i, keep);
    }
}

// out = LayerNorm(res + dropout(y + bias)) over the last axis of [K, M, C] (res and bias
// may be null; bias is [K, C]); keeps xhat (normalised, before gain) and the row's
// sqrt(var + eps) for the backward pass. One warp per row.
extern "C" __global__ void residual_dropout_ln(const float* res, const float* y, const float* bias,
                                               u64 key, float keep, const float* gamma,
                                               const float* beta, float* out, float* xhat,
                                               float* sd_out, int k_branches, int m_rows, int width) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP, lane = threadIdx.x % WARP;
    if (row >= k_branches * m_rows) return;
    int k = row / m_rows;
    size_t base = (size_t)row * width;
    float s = 0.0f;
    for (int c = lane; c < width; c += WARP) {
        float v = y[base + c];
        if (bias) v += bias[k * width + c];
        v *= drop_factor(key, base + c, keep);
        if (res) v += res[base + c];
        out[base + c] = v;
        s += v;
    }
    float mu = warp_sum(s) / width;
    float q = 0.0f;
    for (int c = lane; c < width; c += WARP) {
        float d = out[base + c] - mu;
        q += d * d;
    }
    float sd = sqrtf(warp_sum(q) / width + 1e-5f);
    for (int c = lane; c < width; c += WARP) {
        float h = (out[base + c] - mu) / sd;
        xhat[base + c] = h;
        out[base + c] = h * gamma[k * width + c] + beta[k * width + c];
    }
    if (lane == 0) sd_out[row] = sd;
}

// h [K, M, F]: the first product's output, becomes pre-activation (+ bias [K, F]); hd =
// dropout(relu(pre-activation)).
extern "C" __global__ void bias_relu_dropout(float* h, float* hd, const float* bias, u64 key, float keep,
                                             int k_branches, int m_rows, int width) {
    size_t total = (size_t)k_branches * m_rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int k = i / ((size_t)m_rows * width);
        float v = h[i] + bias[k * width + i % width];
        h[i] = v;
        hd[i] = fmaxf(v, 0.0f) * drop_factor(key, i, keep);
    }
}

// Forecast and reconstruction terms from the projections out [2, B·N, H] (no bias yet;
// bias [2, H]): branch 0 de-normalised by RevIN's statistics, both scored against y [B, H,
// N] (only the last variable when target_only). Writes d(loss)/d(out) into dout (zero for
// unscored variables) and per-block partial sums of each term into partial[0..] and
// partial[PARTIAL_BLOCKS..]. Grid: PARTIAL_BLOCKS × REDUCE_THREADS.
extern "C" __global__ void projection_loss(const float* out, const float* bias, const float* y,
                                           const float* mean, const float* stdv, float* dout,
                                           float* partial, int batch, int vars, int horizon,
                                           int target_only, int kind, float w_forecast,
                                           float w_recon) {
    size_t half = (size_t)batch * vars * horizon;
    float scored = (float)batch * horizon * (target_only ? 1 : vars);
    float lf = 0.0f, lr = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < half;
         i += (size_t)gridDim.x * blockDim.x) {
        int h = i % horizon;
        int m = i / horizon;
        int b = m / vars, n = m % vars;
        if (target_only && n != vars - 1) {
            dout[i] = 0.0f;
            dout[half + i] = 0.0f;
            continue;
        }
        float target = y[((size_t)b * horizon + h) * vars + n];
        float forecast = (out[i] + bias[h]) * stdv[m] + mean[m];
        float recon = out[half + i] + bias[horizon + h];
        float df = forecast - target, dr = recon - target;
        lf += loss_value(kind, df);
        lr += loss_value(kind, dr);
        dout[i] = w_forecast * loss_grad(kind, df) / scored * stdv[m];
        dout[half + i] = w_recon * loss_grad(kind, dr) / scored;
    }
    lf = block_sum(lf);
    lr = block_sum(lr);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = lf / scored;
        partial[PARTIAL_BLOCKS + blockIdx.x] = lr / scored;
    }
}

// Feature distillation between the branches' encodings z [2, count]: its partial sums into
// partial[2·PARTIAL_BLOCKS..], and its gradient added to dz (+ for branch 0, − for 1).
extern "C" __global__ void feature_loss(const float* z, float* dz, float* partial, int count,
                                        int kind, float weight) {
    float acc = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)count;
         i += (size_t)gridDim.x * blockDim.x) {
        float d = z[i] - z[count + i];
        acc += loss_value(kind, d);
        float g = weight * loss_grad(kind, d) / count;
        dz[i] += g;
        dz[count + i] -= g;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[2 * PARTIAL_BLOCKS + blockIdx.x] = acc / count;
}

// Correlation distillation: the batch means of the last layer's dropped-out attention pd
// [2, B, heads·N·N]; partial sums into partial[3·PARTIAL_BLOCKS..] and d(loss)/d(mean of
// branch 0) into gatt [heads·N·N] (branch 1's is its negative).
extern "C" __global__ void attention_loss(const float* pd, float* gatt, float* partial, int batch,
                                          int count, int kind, float weight) {
    float acc = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)count;
         i += (size_t)gridDim.x * blockDim.x) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int b = 0; b < batch; ++b) {
            a0 += pd[(size_t)b * count + i];
            a1 += pd[((size_t)batch + b) * count + i];
        }
        float d = a0 / batch - a1 / batch;
        acc += loss_value(kind, d);
        gatt[i] = weight * loss_grad(kind, d) / count;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[3 * PARTIAL_BLOCKS + blockIdx.x] = acc / count;
}

// The step's terms from the partial sums (forecast, recon, feature, att; absent terms'
// partials must be zero) and their weighted total, written to step[0..5] as (total, forecast,
// recon, feature, att) and added, times `share`, to sums[0..5]. One block of REDUCE_THREADS.
extern "C" __global__ void finish_losses(const float* partial, float* step, float* sums, float share,
                                         float w0, float w1, float w2, float w3) {
    float terms[4];
    for (int t = 0; t < 4; ++t) terms[t] = block_sum(partial[t * PARTIAL_BLOCKS + threadIdx.x]);
    if (threadIdx.x == 0) {
        float total = terms[0] * w0 + terms[1] * w1 + terms[2] * w2 + terms[3] * w3;
        float values[5] = {total, terms[0], terms[1], terms[2], terms[3]};
        for (int t = 0; t < 5; ++t) {
            step[t] = values[t];
            sums[t] += values[t] * share;
        }
    }
}

// Backward of softmax_dropout. dpd [rows, N]: gradient of the dropped-out probabilities
// (plus, when gatt is given, the attention term's ± gatt / B broadcast over the batch:
// rows are (k, b, h, i)). Writes d(scores) into ds. One warp per row.
extern "C" __global__ void softmax_backward(const float* p, const float* dpd, const float* gatt,
                                            float* ds, int rows, int n, int batch, int heads,
                                            u64 key, float keep) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP, lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int per_branch = batch * heads * n;
    float sign = row < per_branch ? 1.0f : -1.0f;
    int hi = row % (heads * n);  // h·N + i
    size_t base = (size_t)row * n;
    float dot = 0.0f;
    for (int j = lane; j < n; j += WARP) {
        float g = dpd[base + j];
        if (gatt) g += sign * gatt[(size_t)hi * n + j] / batch;
        g *= drop_factor(key, base + j, keep);
        ds[base + j] = g;
        dot += g * p[base + j];
    }
    dot = warp_sum(dot);
    for (int j = lane; j < n; j += WARP) ds[base + j] = p[base + j] * (ds[base + j] - dot);
}

// Backward of residual_dropout_ln's normalisation: from dout [K, M, C] to d(pre-norm sum)
// into dres; with dbranch, also dres · dropout factor (the gradient of the dropped-out
// branch's input). One warp per row.
extern "C" __global__ void ln_backward(const float* dout, const float* xhat, const float* sd,
                                       const float* gamma, float* dres, float* dbranch, u64 key,
                                       float keep, int k_branches, int m_rows, int width) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / WARP, lane = threadIdx.x % WARP;
    if (row >= k_branches * m_rows) return;
    int k = row / m_rows;
    size_t base = (size_t)row * width;
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < width; c += WARP) {
        float g = dout[base + c] * gamma[k * width + c];
        s1 += g;
        s2 += g * xhat[base + c];
    }
    s1 = warp_sum(s1) / width;
    s2 = warp_sum(s2) / width;
    float inv = 1.0f / sd[row];
    for (int c = lane; c < width; c += WARP) {
        float g = dout[base + c] * gamma[k * width + c];
        float d = (g - s1 - xhat[base + c] * s2) * inv;
        dres[base + c] = d;
        if (dbranch) dbranch[base + c] = d * drop_factor(key, base + c, keep);
    }
}

// Column sums over the rows of [K, M, width] tensors, 32 columns per block: lane = column,
// each of the block's warps sums every 8th row, then the warps' sums are added in warp
// order (a fixed order: the same result every run). out1 gets Σ_m a·b (b may be null:
// Σ_m a), out2 (may be null) Σ_m a.
__device__ void column_sums_of(const float* a, const float* b, float* out1, float* out2,
                               int k_branches, int m_rows, int width) {
    __shared__ float part1[REDUCE_THREADS / WARP][WARP];
    __shared__ float part2[REDUCE_THREADS / WARP][WARP];
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    int col = blockIdx.x * WARP + lane;
    bool live = col < k_branches * width;
    int k = live ? col / width : 0, c = live ? col % width : 0;
    float s1 = 0.0f, s2 = 0.0f;
    if (live)
        for (int m = warp; m < m_rows; m += REDUCE_THREADS / WARP) {
            size_t i = ((size_t)k * m_rows + m) * width + c;
            s1 += b ? a[i] * b[i] : a[i];
            s2 += a[i];
        }
    part1[warp][lane] = s1;
    part2[warp][lane] = s2;
    __syncthreads();
    if (warp == 0 && live) {
        float t1 = 0.0f, t2 = 0.0f;
        for (int w = 0; w < REDUCE_THREADS / WARP; ++w) {
            t1 += part1[w][lane];
            t2 += part2[w][lane];
        }
        out1[col] = t1;
        if (out2) out2[col] = t2;
    }
}

// Gain and shift gradients of a LayerNorm: dgamma[k, c] = Σ_m dout·xhat, dbeta[k, c] = Σ_m dout.
extern "C" __global__ void ln_param_grads(const float* dout, const float* xhat, float* dgamma,
                                          float* dbeta, int k_branches, int m_rows, int width) {
    column_sums_of(dout, xhat, dgamma, dbeta, k_branches, m_rows, width);
}

// Bias gradients: out[k, c] = Σ_m g[k, m, c].
extern "C" __global__ void column_sums(const float* g, float* out, int k_branches, int m_rows,
                                       int width) {
    column_sums_of(g, nullptr, out, nullptr, k_branches, m_rows, width);
}

// Backward of bias_relu_dropout: dh = dhd · dropout factor · (pre > 0).
extern "C" __global__ void relu_dropout_backward(const float* dhd, const float* pre, float* dh,
                                                 u64 key, float keep, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        dh[i] = pre[i] > 0.0f ? dhd[i] * drop_factor(key, i, keep) : 0.0f;
}

// Per-block partial sums of g² (PARTIAL_BLOCKS × REDUCE_THREADS).
extern "C" __global__ void square_partials(const float* g, size_t n, float* partial) {
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += g[i] * g[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Clipping by the global norm (from square_partials' partials; max_norm <= 0: no clipping)
// and AdamW, PyTorch's rule with the scalar factors computed on the host:
// g ← g·min(1, max_norm / (norm + 1e-6)); p ← p·decay; m ← β1·m + (1−β1)·g;
// v ← β2·v + (1−β2)·g²; p ← p − step·m / (sqrt(v) / sqrt_bc2 + eps).
// Block 0 adds the norm to *norm_sum. Grid-stride over n; REDUCE_THREADS threads.
extern "C" __global__ void clip_adamw(float* p, float* m, float* v, float* g, const float* partial,
                                      size_t n, float max_norm, float decay, float beta1,
                                      float one_minus_beta1, float beta2, float one_minus_beta2,
                                      float sqrt_bc2, float eps, float step_size, float* norm_sum) {
    __shared__ float coef_shared;
    float sq = block_sum(partial[threadIdx.x]);
    if (threadIdx.x == 0) {
        float norm = sqrtf(sq);
        float coef = max_norm > 0.0f ? fminf(1.0f / (norm + 1e-6f) * max_norm, 1.0f) : 1.0f;
        coef_shared = coef;
        if (blockIdx.x == 0) *norm_sum += norm;
    }
    __syncthreads();
    float coef = coef_shared;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * coef;
        float mi = m[i] * beta1 + gi * one_minus_beta1;
        float vi = v[i] * beta2 + gi * gi * one_minus_beta2;
        float denom = sqrtf(vi) / sqrt_bc2 + eps;
        p[i] = p[i] * decay - mi / denom * step_size;
        m[i] = mi;
        v[i] = vi;
    }
}
