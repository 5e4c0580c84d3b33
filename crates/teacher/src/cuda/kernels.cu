// Kernels of the teacher's CUDA engine (see mod.rs), compiled at run time by NVRTC: the
// shared helpers and the row kernels (embeddings, norms, copies, activations, rotary
// positions); attention.cu follows this file in the same program (kernels.rs joins them).
//
// Self-contained on purpose: no CUDA headers (half values are `unsigned short`, converted with
// PTX `cvt`), so NVRTC needs no include path. Two element types: `half` (F16) and `float`
// (F32); the residual stream is in the element type too (as in PyTorch's f16 models), and
// the products' epilogue adds each sub-layer's output to it.

typedef unsigned short half_t;
typedef unsigned char u8;

#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ float h2f(half_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ half_t f2h(float f) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Two floats as a half2 in one register: `lo` in the low 16 bits.
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

template <typename T> struct Elem;
template <> struct Elem<float> {
    static __device__ __forceinline__ float load(const float* p) { return *p; }
    static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <> struct Elem<half_t> {
    static __device__ __forceinline__ float load(const half_t* p) { return h2f(*p); }
    static __device__ __forceinline__ void store(half_t* p, float v) { *p = f2h(v); }
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// ---------------------------------------------------------------------------------------
// Embeddings: h[r] = wte[ids[r]] (+ wpe[positions[r]] when the model learns positions),
// tables f32, rows in the element type. One row per warp.
template <typename T>
__device__ void embed_rows(const unsigned* __restrict__ ids, const unsigned* __restrict__ positions,
                           const float* __restrict__ wte, const float* __restrict__ wpe,
                           T* __restrict__ h, int rows, int d) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const float* t = wte + (size_t)ids[warp] * d;
    const float* p = wpe ? wpe + (size_t)positions[warp] * d : nullptr;
    T* out = h + (size_t)warp * d;
    for (int i = lane; i < d; i += 32) Elem<T>::store(out + i, t[i] + (p ? p[i] : 0.f));
}

extern "C" __global__ void embed_f16(const unsigned* ids, const unsigned* positions,
                                     const float* wte, const float* wpe, half_t* h, int rows,
                                     int d) {
    embed_rows<half_t>(ids, positions, wte, wpe, h, rows, d);
}
extern "C" __global__ void embed_f32(const unsigned* ids, const unsigned* positions,
                                     const float* wte, const float* wpe, float* h, int rows,
                                     int d) {
    embed_rows<float>(ids, positions, wte, wpe, h, rows, d);
}

// ---------------------------------------------------------------------------------------
// LayerNorm (or RMSNorm) of the residual stream, one row per warp: out[r] = LN(h[r]) * w + b.
// RMSNorm (rms != 0) is the same without the mean and the bias: h[r] / rms(h[r]) * w.
// Widths d = 128 * N4 have their own kernels (`ln_<h>_<out>_<N4>`): the row stays in N4
// float4 registers per lane, h read once and out written once, and few registers keep many
// rows in flight. Other widths (`ln_<h>_<out>_any`) read the row from memory three times.
template <typename T> struct Vec4;
template <> struct Vec4<float> {
    static __device__ __forceinline__ float4 load(const float* p) { return *(const float4*)p; }
    static __device__ __forceinline__ void store(float* p, float4 v) { *(float4*)p = v; }
};
template <> struct Vec4<half_t> {
    static __device__ __forceinline__ float4 load(const half_t* p) {
        uint2 u = *(const uint2*)p;
        return make_float4(h2f((half_t)(u.x & 0xffff)), h2f((half_t)(u.x >> 16)),
                           h2f((half_t)(u.y & 0xffff)), h2f((half_t)(u.y >> 16)));
    }
    static __device__ __forceinline__ void store(half_t* p, float4 v) {
        *(uint2*)p = make_uint2(pack_half2(v.x, v.y), pack_half2(v.z, v.w));
    }
};

template <typename TH, typename TO, int N4>
__device__ void layer_norm_vec(const TH* __restrict__ h, const float* __restrict__ w,
                               const float* __restrict__ b, TO* __restrict__ out, int rows,
                               float eps, int rms) {
    constexpr int d = 128 * N4;
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const TH* x = h + (size_t)warp * d;
    TO* o = out + (size_t)warp * d;
    float4 v[N4];
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < N4; ++i) {
        v[i] = Vec4<TH>::load(x + 4 * (i * 32 + lane));
        sum += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    const float mean = rms ? 0.f : warp_sum(sum) / d;
    float sq = 0.f;
#pragma unroll
    for (int i = 0; i < N4; ++i) {
        float a = v[i].x - mean, bb = v[i].y - mean, cc = v[i].z - mean, dd = v[i].w - mean;
        sq += (a * a + bb * bb) + (cc * cc + dd * dd);
    }
    const float rstd = rsqrtf(warp_sum(sq) / d + eps);
#pragma unroll
    for (int i = 0; i < N4; ++i) {
        int c = 4 * (i * 32 + lane);
        float4 g = *(const float4*)(w + c);
        float4 be = b ? *(const float4*)(b + c) : make_float4(0.f, 0.f, 0.f, 0.f);
        float4 r = make_float4((v[i].x - mean) * rstd * g.x + be.x,
                               (v[i].y - mean) * rstd * g.y + be.y,
                               (v[i].z - mean) * rstd * g.z + be.z,
                               (v[i].w - mean) * rstd * g.w + be.w);
        Vec4<TO>::store(o + c, r);
    }
}

template <typename TH, typename TO>
__device__ void layer_norm_any(const TH* __restrict__ h, const float* __restrict__ w,
                               const float* __restrict__ b, TO* __restrict__ out, int rows,
                               int d, float eps, int rms) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= rows) return;
    const TH* x = h + (size_t)warp * d;
    TO* o = out + (size_t)warp * d;
    float sum = 0.f;
    for (int i = lane; i < d; i += 32) sum += Elem<TH>::load(x + i);
    float mean = rms ? 0.f : warp_sum(sum) / d;
    float sq = 0.f;
    for (int i = lane; i < d; i += 32) {
        float c = Elem<TH>::load(x + i) - mean;
        sq += c * c;
    }
    float rstd = rsqrtf(warp_sum(sq) / d + eps);
    for (int i = lane; i < d; i += 32)
        Elem<TO>::store(o + i, (Elem<TH>::load(x + i) - mean) * rstd * w[i] + (b ? b[i] : 0.f));
}

// The norm kernels: ln_<types>_any for every width, and ln_<types>_<N4> for rows of 128 * N4,
// instantiated by the LN_WIDTH(N4) line that kernels.rs appends to this source for the model's
// width when it is one of NORM_VECTOR_WIDTHS.
#define LN_ANY(name, TH, TO)                                                                   \
    extern "C" __global__ void ln_##name##_any(const TH* h, const float* w, const float* b,     \
                                               TO* out, int rows, int d, float eps, int rms) {  \
        layer_norm_any<TH, TO>(h, w, b, out, rows, d, eps, rms);                                \
    }
LN_ANY(f16, half_t, half_t)
LN_ANY(f16_out_f32, half_t, float)
LN_ANY(f32, float, float)
#define LN_VEC(name, TH, TO, N4)                                                               \
    extern "C" __global__ void ln_##name##_##N4(const TH* h, const float* w, const float* b,   \
                                                 TO* out, int rows, int d, float eps, int rms) { \
        layer_norm_vec<TH, TO, N4>(h, w, b, out, rows, eps, rms);                               \
    }
#define LN_WIDTH(N4)                                                                           \
    LN_VEC(f16, half_t, half_t, N4)                                                            \
    LN_VEC(f16_out_f32, half_t, float, N4)                                                     \
    LN_VEC(f32, float, float, N4)

// ---------------------------------------------------------------------------------------
// dst[r] = src[rows[r]] for rows of `words` 32-bit words (the residual rows of the last
// tokens).
extern "C" __global__ void gather_rows(const unsigned* __restrict__ src,
                                       const unsigned* __restrict__ rows,
                                       unsigned* __restrict__ dst, int n, int words) {
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (warp >= n) return;
    const unsigned* s = src + (size_t)rows[warp] * words;
    unsigned* o = dst + (size_t)warp * words;
    for (int i = lane; i < words; i += 32) o[i] = s[i];
}

// ---------------------------------------------------------------------------------------
// The prefix cache's rows: dst[r] = the `k | v` columns of src[r] (rows `q | k | v` of
// `ld` elements, the first `skip` of them the queries), copied as 32-bit words; `row_words`
// words per cache row.
extern "C" __global__ void copy_keys_values(const unsigned* __restrict__ src,
                                            unsigned* __restrict__ dst, int rows, int ld_words,
                                            int skip_words, int row_words) {
    size_t n = (size_t)rows * row_words;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (; t < n; t += stride) {
        size_t r = t / row_words;
        size_t w = t - r * row_words;
        dst[t] = src[r * ld_words + skip_words + w];
    }
}

// ---------------------------------------------------------------------------------------
// GELU in place, for models whose activation the GEMM epilogue does not provide.
// tanh form (GPT-2's "gelu_new") or exact erf form.
template <typename T>
__device__ void gelu_inplace(T* x, size_t n, bool tanh_form) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (; i < n; i += stride) {
        float v = Elem<T>::load(x + i);
        float g;
        if (tanh_form) {
            float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
            g = 0.5f * v * (1.f + tanhf(u));
        } else {
            g = 0.5f * v * (1.f + erff(v * 0.7071067811865476f));
        }
        Elem<T>::store(x + i, g);
    }
}
extern "C" __global__ void gelu_f16(half_t* x, unsigned long long n, int tanh_form) {
    gelu_inplace<half_t>(x, n, tanh_form != 0);
}
extern "C" __global__ void gelu_f32(float* x, unsigned long long n, int tanh_form) {
    gelu_inplace<float>(x, n, tanh_form != 0);
}

// ---------------------------------------------------------------------------------------
// SwiGLU (LLaMA's MLP): out[r, i] = silu(gu[r, i]) * gu[r, inner + i], where row r of gu is
// the gate and up projections side by side.
template <typename T>
__device__ void swiglu(const T* __restrict__ gu, T* __restrict__ out, size_t rows, int inner) {
    size_t n = rows * inner;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (; t < n; t += stride) {
        size_t r = t / inner;
        size_t i = t - r * inner;
        const T* row = gu + r * 2 * inner;
        float g = Elem<T>::load(row + i), u = Elem<T>::load(row + inner + i);
        Elem<T>::store(out + t, g / (1.f + __expf(-g)) * u);
    }
}
extern "C" __global__ void swiglu_f16(const half_t* gu, half_t* out, unsigned long long rows,
                                      int inner) {
    swiglu<half_t>(gu, out, rows, inner);
}
extern "C" __global__ void swiglu_f32(const float* gu, float* out, unsigned long long rows,
                                      int inner) {
    swiglu<float>(gu, out, rows, inner);
}

// ---------------------------------------------------------------------------------------
// Rotary positions (LLaMA), in place on the first `heads` heads of rows of width ld (the
// query heads and the key heads of q|k|v rows): dimension i of a head pairs with i + half,
//   x_i' = x_i cos - x_{i+half} sin,   x_{i+half}' = x_{i+half} cos + x_i sin,
// the angle being positions[r] times the pair's frequency; cos and sin come from tables
// [position, half] computed on the host.
template <typename T>
__device__ void rotary(T* __restrict__ x, const unsigned* __restrict__ positions,
                       const float* __restrict__ cos_table, const float* __restrict__ sin_table,
                       int rows, int ld, int heads, int head_dim) {
    const int half = head_dim >> 1;
    size_t n = (size_t)rows * heads * half;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (; t < n; t += stride) {
        int i = (int)(t % half);
        size_t rh = t / half;
        int head = (int)(rh % heads);
        size_t r = rh / heads;
        T* p = x + r * ld + (size_t)head * head_dim;
        size_t a = (size_t)positions[r] * half + i;
        float c = cos_table[a], s = sin_table[a];
        float x1 = Elem<T>::load(p + i), x2 = Elem<T>::load(p + i + half);
        Elem<T>::store(p + i, x1 * c - x2 * s);
        Elem<T>::store(p + i + half, x2 * c + x1 * s);
    }
}
extern "C" __global__ void rotary_f16(half_t* x, const unsigned* positions, const float* cos_table,
                                      const float* sin_table, int rows, int ld, int heads,
                                      int head_dim) {
    rotary<half_t>(x, positions, cos_table, sin_table, rows, ld, heads, head_dim);
}
extern "C" __global__ void rotary_f32(float* x, const unsigned* positions, const float* cos_table,
                                      const float* sin_table, int rows, int ld, int heads,
                                      int head_dim) {
    rotary<float>(x, positions, cos_table, sin_table, rows, ld, heads, head_dim);
}

