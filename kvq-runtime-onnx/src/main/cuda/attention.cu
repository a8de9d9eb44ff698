// Attention that reads kvq's quantized history where it lies: one layer's decode (or prefill chunk) for every query
// head, dequantizing each key and value once per block into registers and shared memory, never into a float copy of
// the history. The math is the model's: softmax(q k^T * scale + bias) v over the quantized tokens, the float residual
// window and the new tokens, in that order (the order of the model's attention mask). Split-K over the tokens
// ("flash decoding") keeps every SM busy at small batches; kvq_attention_combine joins the splits.
// Compiled to PTX by tools/build_kernels.sh; the PTX is a resource of kvq-runtime-onnx (AttentionKernel.java).
#include <cuda_fp16.h>

#define KVQ_THREADS 128
#define KVQ_MOST_OUTPUTS 1024   // group * headDim
#define KVQ_TILE_FLOATS 8192    // tile * headDim
// the tile's values are stored a row of headDim + 1 apart, so that threads writing one row each do not share a bank

// One run of consecutive KV heads (StoredRun): codes [T, B, heads, rowBytes], parameters [T, B, heads, D / group]
// (token groups) or [T / group, B, heads, D] (channel groups), float16 or float32. Raw runs (bits 16, 32) hold
// values [T, B, heads, D]. With token blocks of 2^tokenShift tokens, rows of codes, token-group parameters and raw
// values are [T / block, B, heads, block, ...]: a head's consecutive tokens lie side by side, so the lanes of a warp,
// one token each, read one stretch of memory instead of a scattered 32-byte piece each.
struct KvqRun {
    const unsigned char* codes;
    const void* scales;
    const void* zeros;
    int firstHead;
    int heads;
    int bits;
    int channelAxis;
    int groupSize;
    int scaleMin;      // 1: u * scale + zero; 0: ((u + codeOffset) + zero) * scale
    int codeOffset;
    int halfParams;
    int tokenShift;
};

// One launch covers the KV heads [firstKvHead, firstKvHead + launchKvHeads), which lie in one run of the keys and
// one of the values (a layer whose heads differ in bits takes one launch per stretch of equal runs).
struct KvqAttention {
    KvqRun key;
    KvqRun value;
    const void* query;     // [B, heads, t, D]
    const void* newKey;    // [B, kvHeads, t, D]
    const void* newValue;
    const void* residualKey;    // [B, kvHeads, R, D]; unused when R is 0
    const void* residualValue;
    const void* bias;      // additive, broadcast over [B, heads, t, T + R + t] with the strides below
    void* out;             // [B, heads, t, D]
    float* partial;        // [rows, splits, group, D + 2]: m, l, then the unnormalized output
    long long biasBatchStride;
    long long biasHeadStride;
    int batch;
    int kvHeads;
    int firstKvHead;
    int launchKvHeads;
    int group;             // query heads per KV head
    int newTokens;         // t
    int quantized;         // T, the quantized tokens' capacity
    int residual;          // R
    int headDim;
    int splits;
    int tokensPerSplit;    // a multiple of the tile
    float scale;
};

template <typename T> __device__ __forceinline__ float load(const void* p, long long i);
template <> __device__ __forceinline__ float load<float>(const void* p, long long i) {
    return ((const float*) p)[i];
}
template <> __device__ __forceinline__ float load<__half>(const void* p, long long i) {
    return __half2float(((const __half*) p)[i]);
}
template <typename T> __device__ __forceinline__ void store(void* p, long long i, float v);
template <> __device__ __forceinline__ void store<float>(void* p, long long i, float v) {
    ((float*) p)[i] = v;
}
template <> __device__ __forceinline__ void store<__half>(void* p, long long i, float v) {
    ((__half*) p)[i] = __float2half_rn(v);
}

__device__ __forceinline__ float param(const KvqRun& r, long long i, bool scale) {
    const void* p = scale ? r.scales : r.zeros;
    return r.halfParams ? __half2float(((const __half*) p)[i]) : ((const float*) p)[i];
}

// Eight float16 or four float32 values at a time from a row of floats (16-byte aligned), through sink(d, value).
template <typename Sink>
__device__ __forceinline__ void floatRowHalf(const __half* row, int d0, int count, Sink sink) {
    for (int d = d0; d < d0 + count; d += 8) {
        uint4 v = *(const uint4*) (row + d);
        const __half2* h = (const __half2*) &v;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(h[i]);
            sink(d + 2 * i, f.x);
            sink(d + 2 * i + 1, f.y);
        }
    }
}
template <typename Sink>
__device__ __forceinline__ void floatRowFloat(const float* row, int d0, int count, Sink sink) {
    for (int d = d0; d < d0 + count; d += 4) {
        float4 v = *(const float4*) (row + d);
        sink(d, v.x);
        sink(d + 1, v.y);
        sink(d + 2, v.z);
        sink(d + 3, v.w);
    }
}

// Chunk c of a row of codes (16 bytes), as four words. ALIGNED: the row is 16-byte aligned, so no check.
template <bool ALIGNED = false>
__device__ __forceinline__ void chunkWords(const unsigned char* row, int c, unsigned int (&words)[4]) {
    if (ALIGNED || (((unsigned long long) row) & 15ull) == 0) {
        uint4 v = *(const uint4*) (row + 16 * c);
        words[0] = v.x;
        words[1] = v.y;
        words[2] = v.z;
        words[3] = v.w;
    } else {
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const unsigned char* q = row + 16 * c + 4 * w;
            words[w] = q[0] | (q[1] << 8) | (q[2] << 16) | ((unsigned int) q[3] << 24);
        }
    }
}

// Code k of plane p of a chunk's words, as a float.
template <int BITS>
__device__ __forceinline__ float codeAt(const unsigned int (&words)[4], int p, int k) {
    return (float) ((words[k >> 2] >> (8 * (k & 3) + p * BITS)) & ((1u << BITS) - 1u));
}

// A token group's decode as one multiply-add, u * scale + shift: scale-min codes decode to u * s + z, zero-point ones
// to ((u + offset) + z) * s, here (u * s) + (offset + z) * s, which rounds differently by at most an ulp or two.
__device__ __forceinline__ float2 affineOf(const KvqRun& r, float s, float z) {
    return r.scaleMin ? make_float2(s, z) : make_float2(s, ((float) r.codeOffset + z) * s);
}

// The sixteen-code planes of codes [d0, d0 + count) of one row, BITS wide in kvq's planar layout: each 16-byte chunk
// holds 16 * (8 / BITS) codes, byte k holding codes k + 16 p at bit offset p * BITS. Calls plane(base, words, p) for
// the plane of codes [base, base + 16): code k of it is codeAt<BITS>(words, p, k).
// ALIGNED: as chunkWords.
template <int BITS, bool ALIGNED = false, typename Plane>
__device__ __forceinline__ void forEachPlane(const unsigned char* row, int d0, int count, Plane plane) {
    constexpr int PLANES = 8 / BITS;
    constexpr int PER_CHUNK = 16 * PLANES;
    for (int c = d0 / PER_CHUNK; c < (d0 + count) / PER_CHUNK; c++) {
        unsigned int words[4];
        chunkWords<ALIGNED>(row, c, words);
#pragma unroll
        for (int p = 0; p < PLANES; p++) {
            plane(c * PER_CHUNK + p * 16, words, p);
        }
    }
}

// Codes [d0, d0 + count) of one row through sink(d, value). Sixteen consecutive codes share one token-axis group (the
// host admits group sizes that are multiples of 16), so their parameters are loaded once. CHANNEL: groups along
// tokens, each code with its channel's parameters (a template parameter, so no code pays for a branch on it).
template <int BITS, bool CHANNEL, typename Sink>
__device__ __forceinline__ void codeRow(const KvqRun& r, const unsigned char* row, long long paramRow, int d0,
                                        int count, Sink sink) {
    const float offset = (float) r.codeOffset;
    forEachPlane<BITS>(row, d0, count, [&](int base, const unsigned int (&words)[4], int p) {
        if (CHANNEL) {
#pragma unroll
            for (int k = 0; k < 16; k++) {
                float u = codeAt<BITS>(words, p, k);
                float s = param(r, paramRow + base + k, true);
                float z = param(r, paramRow + base + k, false);
                sink(base + k, r.scaleMin ? u * s + z : ((u + offset) + z) * s);
            }
        } else {
            long long pi = paramRow + base / r.groupSize;
            float2 f = affineOf(r, param(r, pi, true), param(r, pi, false));
#pragma unroll
            for (int k = 0; k < 16; k++) {
                sink(base + k, fmaf(codeAt<BITS>(words, p, k), f.x, f.y));
            }
        }
    });
}

// Row index of token j of head `head` of a run: [T, B, heads] rows, or [T / block, B, heads, block] with token blocks.
__device__ __forceinline__ long long rowIndexOf(const KvqRun& r, int batch, int b, int head, int j) {
    const int block = j >> r.tokenShift;
    return ((((long long) block * batch + b) * r.heads + (head - r.firstHead)) << r.tokenShift)
            + (j - (block << r.tokenShift));
}

// Values [d0, d0 + count) of token j of head `head` of a run, in float32, through `sink(d, value)`.
template <typename Sink>
__device__ __forceinline__ void decodeRow(const KvqRun& r, int batch, int b, int head, int j, int headDim, int d0,
                                          int count, Sink sink) {
    int hr = head - r.firstHead;
    long long rowIndex = rowIndexOf(r, batch, b, head, j);
    if (r.bits == 16) {
        floatRowHalf((const __half*) r.codes + rowIndex * headDim, d0, count, sink);
        return;
    }
    if (r.bits == 32) {
        floatRowFloat((const float*) r.codes + rowIndex * headDim, d0, count, sink);
        return;
    }
    const unsigned char* row = r.codes + rowIndex * (headDim * r.bits / 8);
    long long paramRow = r.channelAxis
            ? (((long long) (j / r.groupSize) * batch + b) * r.heads + hr) * headDim
            : rowIndex * (headDim / r.groupSize);
    if (r.channelAxis) {
        if (r.bits == 4) {
            codeRow<4, true>(r, row, paramRow, d0, count, sink);
        } else if (r.bits == 2) {
            codeRow<2, true>(r, row, paramRow, d0, count, sink);
        } else {
            codeRow<8, true>(r, row, paramRow, d0, count, sink);
        }
    } else if (r.bits == 4) {
        codeRow<4, false>(r, row, paramRow, d0, count, sink);
    } else if (r.bits == 2) {
        codeRow<2, false>(r, row, paramRow, d0, count, sink);
    } else {
        codeRow<8, false>(r, row, paramRow, d0, count, sink);
    }
}

// Token j of the layer's keys or values for (b, head): quantized history, residual window, or the new tokens.
template <typename T, typename Sink>
__device__ __forceinline__ void decodeToken(const KvqAttention& a, const KvqRun& run, const void* residual,
                                            const void* fresh, int b, int head, int j, int d0, int count, Sink sink) {
    int D = a.headDim;
    if (j < a.quantized) {
        decodeRow(run, a.batch, b, head, j, D, d0, count, sink);
        return;
    }
    long long base;
    const void* src;
    if (j < a.quantized + a.residual) {
        base = (((long long) b * a.kvHeads + head) * a.residual + (j - a.quantized)) * D;
        src = residual;
    } else {
        base = (((long long) b * a.kvHeads + head) * a.newTokens + (j - a.quantized - a.residual)) * D;
        src = fresh;
    }
    if (sizeof(T) == 2) {
        floatRowHalf((const __half*) src + base, d0, count, sink);
    } else {
        floatRowFloat((const float*) src + base, d0, count, sink);
    }
}

// The query row a block works on: sequence b, KV head kvh, new token qi, and the sizes derived from them.
struct KvqRow {
    int qi;
    int kvh;
    int b;
    int heads;     // query heads
    int total;     // positions attended over: quantized, residual and new tokens
};

__device__ __forceinline__ KvqRow rowOf(const KvqAttention& a) {
    const int row = blockIdx.x;
    const int t = a.newTokens;
    KvqRow r;
    r.qi = row % t;
    r.kvh = a.firstKvHead + (row / t) % a.launchKvHeads;
    r.b = row / t / a.launchKvHeads;
    r.heads = a.kvHeads * a.group;
    r.total = a.quantized + a.residual + t;
    return r;
}

// Where output (query head h of the row's group, channel d) goes.
__device__ __forceinline__ long long outIndex(const KvqAttention& a, const KvqRow& r, int h, int d) {
    return (((long long) r.b * r.heads + r.kvh * a.group + h) * a.newTokens + r.qi) * a.headDim + d;
}

// queries[d * 8 + k]: the group's eight (at most) scaled values of channel d side by side, read as two float4; then
// querySums[(d / 16) * 8 + k]: their sums over each sixteen channels (for keyDots). Synchronizes the block.
template <typename T>
__device__ __forceinline__ void loadQueries(const KvqAttention& a, const KvqRow& r, float* queries,
                                            float* querySums) {
    const int D = a.headDim;
    const int g = a.group;
    for (int i = threadIdx.x; i < 8 * D; i += KVQ_THREADS) {
        int k = i % 8, d = i / 8;
        queries[i] = k < g ? load<T>(a.query, outIndex(a, r, k, d)) * a.scale : 0.f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D / 2; i += KVQ_THREADS) {     // D / 16 sixteens of 8 queries
        int k = i % 8, c = i / 8;
        float sum = 0.f;
#pragma unroll
        for (int d = 0; d < 16; d++) sum += queries[(16 * c + d) * 8 + k];
        querySums[i] = sum;
    }
}

// Four floats of shared memory (16-byte aligned) in one load, which the compiler then neither splits nor merges: left
// to itself it sometimes re-read half of such a load as a pair, and not the same way from one compilation to the next
__device__ __forceinline__ float4 sharedFloat4(const float* p) {
    float4 v;
    asm("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
        : "r"((unsigned int) __cvta_generic_to_shared(p)));
    return v;
}

// acc[k] += q[k] * x for the group's G (4 or 8) queries of one channel, q in shared memory and 16-byte aligned
template <int G>
__device__ __forceinline__ void addProducts(const float* q, float x, float (&acc)[G]) {
    float4 lo = sharedFloat4(q);
    acc[0] += lo.x * x;
    acc[1] += lo.y * x;
    acc[2] += lo.z * x;
    acc[3] += lo.w * x;
    if constexpr (G > 4) {
        float4 hi = sharedFloat4(q + 4);
        acc[4] += hi.x * x;
        acc[5] += hi.y * x;
        acc[6] += hi.z * x;
        acc[7] += hi.w * x;
    }
}

// The products of a row of codes grouped along channels with the queries, taken over the codes themselves: a code
// decodes to u * f.x + f.y per sixteen channels, so q . x = f.x (q . u) + f.y sum(q), one multiply-add per code and
// query and no decode of each code first.
template <int BITS, int G>
__device__ __forceinline__ void codeDots(const KvqRun& r, const unsigned char* row, long long paramRow, int d0,
                                         int count, const float* queries, const float* querySums, float (&dots)[G]) {
    forEachPlane<BITS>(row, d0, count, [&](int base, const unsigned int (&words)[4], int p) {
        float part[G];
#pragma unroll
        for (int k = 0; k < G; k++) part[k] = 0.f;
#pragma unroll
        for (int k = 0; k < 16; k++) addProducts<G>(queries + 8 * (base + k), codeAt<BITS>(words, p, k), part);
        long long pi = paramRow + base / r.groupSize;
        float2 f = affineOf(r, param(r, pi, true), param(r, pi, false));
        float sums[G];
#pragma unroll
        for (int k = 0; k < G; k++) sums[k] = 0.f;
        addProducts<G>(querySums + 8 * (base / 16), f.y, sums);
#pragma unroll
        for (int k = 0; k < G; k++) dots[k] += f.x * part[k] + sums[k];
    });
}

// Token j's channels [d0, d0 + span): their products with the group's queries added to dots (G of them: queries past
// the group are zeros), its values into valueRow (zeros past the split's end).
template <int G, typename T>
__device__ __forceinline__ void keyAndValue(const KvqAttention& a, const KvqRow& r, int j, int end, int d0, int span,
                                            const float* queries, const float* querySums, float (&dots)[G],
                                            float* valueRow) {
#pragma unroll
    for (int k = 0; k < G; k++) dots[k] = 0.f;
    if (j >= end) {
        for (int d = d0; d < d0 + span; d++) valueRow[d] = 0.f;
        return;
    }
    const KvqRun& key = a.key;
    if (j < a.quantized && key.bits <= 8 && !key.channelAxis) {
        long long rowIndex = rowIndexOf(key, a.batch, r.b, r.kvh, j);
        const unsigned char* row = key.codes + rowIndex * (a.headDim * key.bits / 8);
        long long paramRow = rowIndex * (a.headDim / key.groupSize);
        if (key.bits == 4) {
            codeDots<4, G>(key, row, paramRow, d0, span, queries, querySums, dots);
        } else if (key.bits == 2) {
            codeDots<2, G>(key, row, paramRow, d0, span, queries, querySums, dots);
        } else {
            codeDots<8, G>(key, row, paramRow, d0, span, queries, querySums, dots);
        }
    } else {
        decodeToken<T>(a, key, a.residualKey, a.newKey, r.b, r.kvh, j, d0, span, [&](int d, float x) {
            addProducts<G>(queries + 8 * d, x, dots);
        });
    }
    decodeToken<T>(a, a.value, a.residualValue, a.newValue, r.b, r.kvh, j, d0, span, [&](int d, float x) {
        valueRow[d] = x;
    });
}

// The additive mask of query head k of the group: its row over the positions attended.
template <typename T>
__device__ __forceinline__ const T* biasRow(const KvqAttention& a, const KvqRow& r, int k) {
    return (const T*) a.bias + r.b * a.biasBatchStride + (long long) (r.kvh * a.group + k) * a.biasHeadStride
            + (long long) r.qi * r.total;
}

// The additive mask of query head k of the group at position j.
template <typename T>
__device__ __forceinline__ float biasAt(const KvqAttention& a, const KvqRow& r, int k, int j) {
    return load<T>(biasRow<T>(a, r, k), j);
}

// A block's result for query head h, channel d: the output itself when the history is one split, else the split's
// maximum, sum and unnormalized output for kvq_attention_combine.
template <typename T>
__device__ __forceinline__ void emit(const KvqAttention& a, const KvqRow& r, int h, int d, float m, float l, float x) {
    if (a.splits == 1) {
        store<T>(a.out, outIndex(a, r, h, d), l > 0.f ? x / l : 0.f);
    } else {
        float* p = a.partial + (((long long) blockIdx.x * a.splits + blockIdx.y) * a.group + h) * (a.headDim + 2);
        if (d == 0) {
            p[0] = m;
            p[1] = l;
        }
        p[2 + d] = x;
    }
}

template <typename T>
__device__ void attend(const KvqAttention& a) {
    __shared__ __align__(16) float queries[8 * 128];
    __shared__ __align__(16) float querySums[8 * 128 / 16];
    __shared__ float values[KVQ_TILE_FLOATS + KVQ_THREADS];
    __shared__ float weights[KVQ_MOST_OUTPUTS];     // group * tile <= 8 * 128
    __shared__ float alphas[8];
    __shared__ float maxima[8];
    __shared__ float sums[8];

    const int D = a.headDim;
    const int g = a.group;
    const KvqRow r = rowOf(a);
    const int total = r.total;
    const int tile = min(KVQ_THREADS, KVQ_TILE_FLOATS / D);
    const int perToken = KVQ_THREADS / tile;     // threads sharing one token's row
    const int span = D / perToken;
    const int tid = threadIdx.x;

    loadQueries<T>(a, r, queries, querySums);
    if (tid < g) {
        maxima[tid] = -INFINITY;
        sums[tid] = 0.f;
    }
    float acc[KVQ_MOST_OUTPUTS / KVQ_THREADS];
#pragma unroll
    for (int k = 0; k < KVQ_MOST_OUTPUTS / KVQ_THREADS; k++) acc[k] = 0.f;
    __syncthreads();

    const int start = blockIdx.y * a.tokensPerSplit;
    const int end = min(start + a.tokensPerSplit, total);
    const int slot = tid / perToken;
    const int d0 = (tid % perToken) * span;
    for (int first = start; first < end; first += tile) {
        int j = first + slot;
        float dots[8];
        keyAndValue<8, T>(a, r, j, end, d0, span, queries, querySums, dots, values + slot * (D + 1));
#pragma unroll
        for (int k = 0; k < 8; k++) {
            for (int o = perToken / 2; o > 0; o /= 2) dots[k] += __shfl_xor_sync(0xffffffffu, dots[k], o);
        }
        if (tid % perToken == 0) {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (k >= g) break;
                float s = -INFINITY;
                if (j < end) {
                    s = dots[k] + biasAt<T>(a, r, k, j);
                }
                weights[k * tile + slot] = s;
            }
        }
        __syncthreads();
        // one warp per query head: the tile's maximum, its weights and their sum
        int warp = tid / 32, lane = tid % 32;
        for (int k = warp; k < g; k += KVQ_THREADS / 32) {
            float m = -INFINITY;
            for (int i = lane; i < tile; i += 32) m = fmaxf(m, weights[k * tile + i]);
            for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            float before = maxima[k];
            float now = fmaxf(before, m);
            float sum = 0.f;
            for (int i = lane; i < tile; i += 32) {
                float w = now == -INFINITY ? 0.f : __expf(weights[k * tile + i] - now);
                weights[k * tile + i] = w;
                sum += w;
            }
            for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            __syncwarp();
            if (lane == 0) {
                float alpha = before == -INFINITY ? 0.f : __expf(before - now);
                alphas[k] = alpha;
                maxima[k] = now;
                sums[k] = sums[k] * alpha + sum;
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < KVQ_MOST_OUTPUTS / KVQ_THREADS; k++) {
            int o = tid + k * KVQ_THREADS;
            if (o < g * D) {
                int h = o / D, d = o % D;
                float x = acc[k] * alphas[h];
                const float* w = weights + h * tile;
                for (int i = 0; i < tile; i++) x += w[i] * values[i * (D + 1) + d];
                acc[k] = x;
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int k = 0; k < KVQ_MOST_OUTPUTS / KVQ_THREADS; k++) {
        int o = tid + k * KVQ_THREADS;
        if (o >= g * D) continue;
        int h = o / D, d = o % D;
        emit<T>(a, r, h, d, maxima[h], sums[h], acc[k]);
    }
}

#define KVQ_WARPS (KVQ_THREADS / 32)

// Joins the block's warps: warp w left, for query head h of the group, its maximum and sum at rows[(w * g + h) *
// (D + 2)] and its unnormalized output after them; every output is combined from those and emitted.
template <typename T>
__device__ __forceinline__ void joinWarps(const KvqAttention& a, const KvqRow& r, const float* rows) {
    const int D = a.headDim;
    const int g = a.group;
    for (int o = threadIdx.x; o < g * D; o += KVQ_THREADS) {
        int h = o / D, d = o % D;
        // each warp's maximum and sum, read as one pair (D + 2 is even)
        float2 ml[KVQ_WARPS];
        float m = -INFINITY;
#pragma unroll
        for (int wi = 0; wi < KVQ_WARPS; wi++) {
            ml[wi] = *(const float2*) (rows + (wi * g + h) * (D + 2));
            m = fmaxf(m, ml[wi].x);
        }
        float l = 0.f, x = 0.f;
        if (m != -INFINITY) {
#pragma unroll
            for (int wi = 0; wi < KVQ_WARPS; wi++) {
                float f = ml[wi].x == -INFINITY ? 0.f : __expf(ml[wi].x - m);
                l += ml[wi].y * f;
                x += rows[(wi * g + h) * (D + 2) + 2 + d] * f;
            }
        }
        emit<T>(a, r, h, d, m, l, x);
    }
}

// The same attention with each of the block's warps working through tokens of its own: a lane decodes one token's key
// (its dot products with the group's queries) and value (into the warp's rows of shared memory), and each warp keeps
// its own online softmax, so the block synchronizes only to join its warps at the end. A lane accumulates its output
// channels for every query head of the group, so a value read from shared memory serves all of them.
#define KVQ_WARP_FLOATS 2080    // a warp's values: 32 tokens of headDim + 1 floats for head sizes up to 64, 16 of 129

template <int G, typename T>
__device__ void attendWarps(const KvqAttention& a) {
    __shared__ __align__(16) float queries[8 * 128];
    __shared__ __align__(16) float querySums[8 * 128 / 16];
    __shared__ __align__(8) float rows[KVQ_WARPS * KVQ_WARP_FLOATS];  // values; then the warps' results, to join
    __shared__ __align__(16) float weights[KVQ_WARPS * 32 * 8];  // per warp, [token][head]

    const int D = a.headDim;
    const int g = a.group;
    const KvqRow r = rowOf(a);
    const int total = r.total;
    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int lanesPerToken = D > 64 ? D / 64 : 1;
    const int perPass = 32 / lanesPerToken;      // tokens a warp takes at once
    const int span = D / lanesPerToken;
    const int channels = D / 32;                 // output channels per lane: lane, lane + 32, ...
    float* values = rows + warp * KVQ_WARP_FLOATS;
    float* w = weights + warp * 32 * 8;

    loadQueries<T>(a, r, queries, querySums);
    __syncthreads();

    // per query head of the group (G: 4 or 8, the heads past the group computing on zero queries)
    float maxima[G], sums[G], acc[G][4];
#pragma unroll
    for (int k = 0; k < G; k++) {
        maxima[k] = -INFINITY;
        sums[k] = 0.f;
#pragma unroll
        for (int c = 0; c < 4; c++) acc[k][c] = 0.f;
    }
    const int start = blockIdx.y * a.tokensPerSplit;
    const int end = min(start + a.tokensPerSplit, total);
    const int slot = lane / lanesPerToken;
    const int d0 = (lane % lanesPerToken) * span;
    const bool leads = lane % lanesPerToken == 0;    // the lane that speaks for its token
    for (int first = start + warp * perPass; first < end; first += KVQ_WARPS * perPass) {
        int j = first + slot;
        float dots[G];
        keyAndValue<G, T>(a, r, j, end, d0, span, queries, querySums, dots, values + slot * (D + 1));
        if (lanesPerToken == 2) {
#pragma unroll
            for (int k = 0; k < G; k++) dots[k] += __shfl_xor_sync(0xffffffffu, dots[k], 1);
        }
#pragma unroll
        for (int k = 0; k < G; k++) {
            float s = -INFINITY;
            if (j < end && k < g) {
                s = dots[k] + biasAt<T>(a, r, k, j);
            }
            float m = s;
            for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            float now = fmaxf(maxima[k], m);
            float e = now == -INFINITY ? 0.f : __expf(s - now);
            float alpha = maxima[k] == -INFINITY ? 0.f : __expf(maxima[k] - now);
            float part = leads ? e : 0.f;
            for (int o = 16; o > 0; o /= 2) part += __shfl_xor_sync(0xffffffffu, part, o);
            sums[k] = sums[k] * alpha + part;
            maxima[k] = now;
            if (leads) w[slot * 8 + k] = e;
#pragma unroll
            for (int c = 0; c < 4; c++) acc[k][c] *= alpha;
        }
        __syncwarp();
        for (int i = 0; i < perPass; i++) {
            const float* v = values + i * (D + 1) + lane;
#pragma unroll
            for (int c = 0; c < 4; c++) {
                if (c >= channels) break;
                float x = v[32 * c];
                float column[G];
#pragma unroll
                for (int k = 0; k < G; k++) column[k] = acc[k][c];
                addProducts<G>(w + i * 8, x, column);
#pragma unroll
                for (int k = 0; k < G; k++) acc[k][c] = column[k];
            }
        }
        __syncwarp();
    }

    // join the warps: each leaves m, l and its channels per head in shared memory, then every output is combined
    __syncthreads();
#pragma unroll
    for (int k = 0; k < G; k++) {
        if (k >= g) break;
        float* p = rows + (warp * g + k) * (D + 2);
        if (lane == 0) {
            p[0] = maxima[k];
            p[1] = sums[k];
        }
#pragma unroll
        for (int c = 0; c < 4; c++) {
            if (c >= channels) break;
            p[2 + lane + 32 * c] = acc[k][c];
        }
    }
    __syncthreads();
    joinWarps<T>(a, r, rows);
}

// The tensor-core variant: each warp works through 16 tokens at a time, as attendWarps does through 32, but takes its
// products with mma.m16n8k8 (float16 in, float32 sums). The group's query heads are the rows of A (at most 8 of its
// 16; the other 8 are zeros), a tile's tokens the columns of the scores and the channels those of the output. Lanes
// 0-15 write the tile's keys and lanes 16-31 its values into shared memory as float16, one token each, and ldmatrix
// reads them as fragments. Keys are never rounded, since a score's error grows with its size and the softmax
// exponentiates it: codes grouped along channels go in as the codes themselves (small integers, exact in float16) and
// each group's products are scaled afterwards, q . k = s (q . u) + shift sum(q); codes grouped along tokens go in as
// codes too, the token group's scales multiplying the queries instead, held as a float16 pair hi + lo so that the
// product keeps float32's precision. Values are decoded to float16, as are the softmax weights that multiply them:
// their rounding averages out in the output (float16 models hold them so anyway).
#define KVQ_MMA_TILE 16
#define KVQ_KEYS_RAW 0        // the key run holds float16 values
#define KVQ_KEYS_TOKEN 1      // codes in groups of channels within a token
#define KVQ_KEYS_CHANNEL 2    // codes in groups of tokens within a channel

__device__ __forceinline__ unsigned int bitsOf(__half2 h) {
    unsigned int u;
    memcpy(&u, &h, 4);
    return u;
}
__device__ __forceinline__ __half2 half2Of(unsigned int u) {
    __half2 h;
    memcpy(&h, &u, 4);
    return h;
}
__device__ __forceinline__ unsigned int pairOf(float lo, float hi) {
    return bitsOf(__floats2half2_rn(lo, hi));
}

// d += A b for one m16n8k8 step, in place: a0 holds A's row lane / 4, a1 its row lane / 4 + 8 (columns 2 (lane % 4)
// and + 1 each); b rows 2 (lane % 4) and + 1 of column lane / 4; d rows lane / 4 (d[0], d[1]) and lane / 4 + 8 (d[2],
// d[3]), columns 2 (lane % 4) and + 1. Accumulating in place leaves the compiler nothing to copy or clear per step.
__device__ __forceinline__ void mma(float (&d)[4], unsigned int a0, unsigned int a1, unsigned int b) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a0), "r"(a1), "r"(b));
}

// Four 8x8 float16 matrices from shared memory: lanes 8i to 8i + 7 name the rows of matrix i, and each lane receives
// of matrix i row lane / 4, columns 2 (lane % 4) and + 1 (TRANS: column lane / 4, rows 2 (lane % 4) and + 1).
template <bool TRANS>
__device__ __forceinline__ void ldmatrix4(unsigned int (&f)[4], const __half* row) {
    unsigned int at = (unsigned int) __cvta_generic_to_shared(row);
    if (TRANS) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3]) : "r"(at) : "memory");
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3]) : "r"(at) : "memory");
    }
}

// The codes of plane p of a chunk's words (see forEachPlane) as exact float16: u[i] holds codes 2i and 2i + 1 of the
// plane. A byte under 0x64 is the float16 1024 + byte; subtracting 1024 leaves the byte, exactly.
template <int BITS>
__device__ __forceinline__ void planeHalves(const unsigned int (&words)[4], int p, __half2 (&u)[8]) {
    constexpr unsigned int MASK = BITS == 8 ? 0xFFFFFFFFu : BITS == 4 ? 0x0F0F0F0Fu : 0x03030303u;
    const __half2 bias = half2Of(0x64006400u);
#pragma unroll
    for (int w = 0; w < 4; w++) {
        unsigned int t = (words[w] >> (p * BITS)) & MASK;
        u[2 * w] = __hsub2(half2Of(__byte_perm(t, 0x64646464u, 0x4140)), bias);
        u[2 * w + 1] = __hsub2(half2Of(__byte_perm(t, 0x64646464u, 0x4342)), bias);
    }
}

// Sixteen float16 to shared memory (32-byte aligned), as two 16-byte stores.
__device__ __forceinline__ void storeHalves(__half* dst, const __half2 (&x)[8]) {
    uint4* d = (uint4*) dst;
    d[0] = make_uint4(bitsOf(x[0]), bitsOf(x[1]), bitsOf(x[2]), bitsOf(x[3]));
    d[1] = make_uint4(bitsOf(x[4]), bitsOf(x[5]), bitsOf(x[6]), bitsOf(x[7]));
}

template <int D>
__device__ __forceinline__ void copyHalves(__half* dst, const __half* src) {
#pragma unroll
    for (int d = 0; d < D; d += 8) *(uint4*) (dst + d) = *(const uint4*) (src + d);
}

// A row of codes (channels [0, D)) as float16, with each channel group's (scale, shift) where loadParams: decoded
// (values), or left as codes (keys: scale 1, shift 0, exact) with the parameters into params where keyParams. Key
// and value lanes take this one path, the choice between them in selects and a predicated store: with branches the
// compiler gave each its own copy of the loop and a tile paid for both. Channel groups are 2^groupShift channels (a
// divisor of D and a multiple of 16, so a power of two): a shift, where a division cost a tile hundreds of
// instructions.
template <int BITS, int D>
__device__ __forceinline__ void rowHalves(const KvqRun& r, const unsigned char* row, long long paramRow, bool decode,
                                          bool loadParams, bool keyParams, int groupShift, __half* dst,
                                          float2* params) {
    __half2 scale = __float2half2_rn(1.f), shift = __float2half2_rn(0.f);
    forEachPlane<BITS, true>(row, 0, D, [&](int base, const unsigned int (&words)[4], int p) {
        __half2 u[8];
        planeHalves<BITS>(words, p, u);
        if (loadParams && (base & ((1 << groupShift) - 1)) == 0) {
            long long pi = paramRow + (base >> groupShift);
            float2 f = affineOf(r, param(r, pi, true), param(r, pi, false));
            if (keyParams) params[base >> groupShift] = f;
            scale = __float2half2_rn(decode ? f.x : 1.f);
            shift = __float2half2_rn(decode ? f.y : 0.f);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) u[i] = __hfma2(u[i], scale, shift);
        storeHalves(dst + base, u);
    });
}

// A row of values grouped along tokens (each channel its own scale and shift), decoded to float16.
template <int BITS, int D>
__device__ __forceinline__ void channelValueHalves(const KvqRun& r, const unsigned char* row, long long paramRow,
                                                   __half* dst) {
    forEachPlane<BITS, true>(row, 0, D, [&](int base, const unsigned int (&words)[4], int p) {
        __half2 u[8];
        planeHalves<BITS>(words, p, u);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            long long c = paramRow + base + 2 * i;
            float2 f0 = affineOf(r, param(r, c, true), param(r, c, false));
            float2 f1 = affineOf(r, param(r, c + 1, true), param(r, c + 1, false));
            u[i] = __hfma2(u[i], __floats2half2_rn(f0.x, f1.x), __floats2half2_rn(f0.y, f1.y));
        }
        storeHalves(dst + base, u);
    });
}

// Token j's row of the tile where it holds no codes, by one lane: zeros past the warp's tokens, else a float16 row of
// the residual window or of the new tokens (KEYS_TOKEN keys with scale 1 and shift 0). False where j is a quantized
// token, whose row the caller decodes.
template <int D, int KEYS>
__device__ __forceinline__ bool plainRow(const KvqAttention& a, const KvqRow& r, bool value, int j, int end,
                                         __half* dst, float2* params) {
    const bool keyParams = !value && KEYS == KVQ_KEYS_TOKEN;
    if (j >= end) {
#pragma unroll
        for (int d = 0; d < D; d += 8) *(uint4*) (dst + d) = make_uint4(0u, 0u, 0u, 0u);
        if (keyParams) {
            for (int g = 0; g < D / 16; g++) params[g] = make_float2(0.f, 0.f);
        }
        return true;
    }
    if (j < a.quantized) return false;
    long long base = (long long) r.b * a.kvHeads + r.kvh;
    const __half* src = j < a.quantized + a.residual
            ? (const __half*) (value ? a.residualValue : a.residualKey) + (base * a.residual + (j - a.quantized)) * D
            : (const __half*) (value ? a.newValue : a.newKey)
                    + (base * a.newTokens + (j - a.quantized - a.residual)) * D;
    copyHalves<D>(dst, src);
    if (keyParams) {
        for (int g = 0; g < D / 16; g++) params[g] = make_float2(1.f, 0.f);
    }
    return true;
}

// Token j's row of the tile, by one lane: its keys (KEYS_TOKEN: codes, each channel group's (scale, shift) into
// params; KEYS_CHANNEL: codes) or values (decoded), float16 rows copied; zeros past the warp's tokens.
template <int D, int KEYS>
__device__ __forceinline__ void tileRow(const KvqAttention& a, const KvqRow& r, bool value, int j, int end,
                                        int groupShift, __half* dst, float2* params) {
    if (plainRow<D, KEYS>(a, r, value, j, end, dst, params)) return;
    const bool keyParams = !value && KEYS == KVQ_KEYS_TOKEN;
    const KvqRun& run = value ? a.value : a.key;
    const long long rowIndex = rowIndexOf(run, a.batch, r.b, r.kvh, j);
    if (run.bits == 16) {
        copyHalves<D>(dst, (const __half*) run.codes + rowIndex * D);
        return;
    }
    const unsigned char* codes = run.codes + rowIndex * (D * run.bits / 8);
    const long long paramRow = run.channelAxis
            ? (((long long) (j / run.groupSize) * a.batch + r.b) * run.heads + (r.kvh - run.firstHead)) * D
            : rowIndex * (D >> groupShift);
    if (value && run.channelAxis) {
        if (run.bits == 4) {
            channelValueHalves<4, D>(run, codes, paramRow, dst);
        } else if (run.bits == 2) {
            channelValueHalves<2, D>(run, codes, paramRow, dst);
        } else {
            channelValueHalves<8, D>(run, codes, paramRow, dst);
        }
        return;
    }
    const bool loadParams = value || keyParams;     // keys grouped along tokens take their scales in the queries
    if (run.bits == 4) {
        rowHalves<4, D>(run, codes, paramRow, value, loadParams, keyParams, groupShift, dst, params);
    } else if (run.bits == 2) {
        rowHalves<2, D>(run, codes, paramRow, value, loadParams, keyParams, groupShift, dst, params);
    } else {
        rowHalves<8, D>(run, codes, paramRow, value, loadParams, keyParams, groupShift, dst, params);
    }
}

// A row of BITS-bit codes held in registers (chunks of kvq's planar layout, see forEachPlane) as float16, u * scale +
// shift, to shared memory.
template <int BITS, int D, int N>
__device__ __forceinline__ void chunkHalves(const uint4 (&chunks)[N], __half2 scale, __half2 shift, __half* dst) {
    constexpr int PLANES = 8 / BITS;
#pragma unroll
    for (int c = 0; c < D * BITS / 128; c++) {
        const unsigned int words[4] = {chunks[c].x, chunks[c].y, chunks[c].z, chunks[c].w};
#pragma unroll
        for (int p = 0; p < PLANES; p++) {
            __half2 u[8];
            planeHalves<BITS>(words, p, u);
#pragma unroll
            for (int i = 0; i < 8; i++) u[i] = __hfma2(u[i], scale, shift);
            storeHalves(dst + (c * PLANES + p) * 16, u);
        }
    }
}

// For kvq_attention_mma*_k*v*, whose runs hold rows of KEY_BITS-bit keys and VALUE_BITS-bit values in one group of D
// channels along tokens with float16 parameters (per-token caches with q_group_size -1): a lane's row of the next tile,
// its codes and its group's scale and zero, loaded while the lane works on the current tile, so that the load's
// latency passes under a tile's work: K4V2 at 111 x 4k on an H200 took 0.90x the time, KV4 the same
// (docs/results/gpu/fused/kernel-transposed). Every choice here is known when compiled.
template <int D, int KEY_BITS, int VALUE_BITS>
struct RowAhead {
    static constexpr int MOST_BITS = KEY_BITS > VALUE_BITS ? KEY_BITS : VALUE_BITS;
    uint4 chunks[D * MOST_BITS / 128];
    unsigned int params;     // float16 scale (low half) and zero (high half)

    // Loads token j's row, where j is a quantized token before end; leaves this as it was otherwise (plainRow takes
    // that row).
    __device__ __forceinline__ void fetch(const KvqAttention& a, const KvqRow& r, bool value, int j, int end) {
        if (j >= end || j >= a.quantized) return;
        const KvqRun& run = value ? a.value : a.key;
        const int count = D * (value ? VALUE_BITS : KEY_BITS) / 128;
        // rows of one layer number fewer than 2^31 (AttentionKernel checks)
        const int shift = run.tokenShift;
        const int block = j >> shift;
        const int rowIndex = (((block * a.batch + r.b) * run.heads + (r.kvh - run.firstHead)) << shift)
                + (j - (block << shift));
        const uint4* src = (const uint4*) run.codes + (long long) rowIndex * count;
#pragma unroll
        for (int c = 0; c < D * MOST_BITS / 128; c++) {
            if (KEY_BITS == VALUE_BITS || c < count) chunks[c] = src[c];
        }
        params = (unsigned int) ((const unsigned short*) run.scales)[rowIndex]
                | (unsigned int) ((const unsigned short*) run.zeros)[rowIndex] << 16;
    }

    // The row fetched, to shared memory: values decoded, keys as codes with their (scale, shift) into params[0].
    __device__ __forceinline__ void decode(const KvqAttention& a, bool value, __half* dst, float2* keyParams) const {
        const KvqRun& run = value ? a.value : a.key;
        const __half2 sz = half2Of(params);
        const float2 f = affineOf(run, __low2float(sz), __high2float(sz));
        if (!value) keyParams[0] = f;
        const __half2 scale = __float2half2_rn(value ? f.x : 1.f), shift = __float2half2_rn(value ? f.y : 0.f);
        if (KEY_BITS == VALUE_BITS || !value) {
            chunkHalves<KEY_BITS, D>(chunks, scale, shift, dst);
        } else {
            chunkHalves<VALUE_BITS, D>(chunks, scale, shift, dst);
        }
    }
};

// Nothing ahead where the runs' bits are known only at run time.
template <int D>
struct RowAhead<D, 0, 0> {
    __device__ __forceinline__ void fetch(const KvqAttention&, const KvqRow&, bool, int, int) {}
};

// KEYS_CHANNEL: the A fragments of the queries times token group `group`'s scales (hi + lo), and head h's product
// with the group's shifts, which every quantized token's score adds.
template <int D>
__device__ __forceinline__ void scaleQueries(const KvqAttention& a, const KvqRow& r, int group, int quad,
                                             const unsigned int (&q)[D / 8], unsigned int (&hi)[D / 8],
                                             unsigned int (&lo)[D / 8], float& shift) {
    const KvqRun& key = a.key;
    const long long row = (((long long) group * a.batch + r.b) * key.heads + (r.kvh - key.firstHead)) * D;
    float sum = 0.f;
#pragma unroll
    for (int s = 0; s < D / 8; s++) {
        long long c = row + 8 * s + 2 * quad;
        float2 qf = __half22float2(half2Of(q[s]));
        float2 f0 = affineOf(key, param(key, c, true), param(key, c, false));
        float2 f1 = affineOf(key, param(key, c + 1, true), param(key, c + 1, false));
        float x0 = qf.x * f0.x, x1 = qf.y * f1.x;
        __half2 h = __floats2half2_rn(x0, x1);
        float2 hf = __half22float2(h);
        hi[s] = bitsOf(h);
        lo[s] = pairOf(x0 - hf.x, x1 - hf.y);
        sum += qf.x * f0.y + qf.y * f1.y;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    shift = sum;
}

// e^x by ex2.approx.ftz: __expf's own form also checks for a result below float's normal range, which costs a tile's
// softmax a few instructions per weight and changes nothing a float16 weight can hold
__device__ __forceinline__ float expFlush(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
    return y;
}

template <int D, int KEYS, int KEY_BITS = 0, int VALUE_BITS = 0>
__device__ void attendMma(const KvqAttention& a) {
    // halves a row: rows lie 16 bytes apart modulo 128, so ldmatrix's eight rows miss each other's banks
    constexpr int PITCH = D + 8;
    constexpr int STEPS = D / 8;     // k-steps of the scores
    constexpr int MOST_GROUPS = D / 16;
    constexpr int TILE_HALVES = KVQ_MMA_TILE * PITCH;
    constexpr int TILE_BYTES = KVQ_WARPS * 2 * TILE_HALVES * 2;
    constexpr int JOIN_BYTES = KVQ_WARPS * 8 * (D + 2) * 4;
    __shared__ __align__(16) unsigned char shared[TILE_BYTES > JOIN_BYTES ? TILE_BYTES : JOIN_BYTES];
    __shared__ float2 keyParams[KVQ_WARPS * KVQ_MMA_TILE * MOST_GROUPS];

    const int g = a.group;
    const KvqRow r = rowOf(a);
    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int h = lane / 4;          // the query head of the fragments' first row
    const int quad = lane % 4;       // their column pair
    __half* keys = (__half*) shared + warp * 2 * TILE_HALVES;
    __half* values = keys + TILE_HALVES;
    float2* params = keyParams + warp * KVQ_MMA_TILE * MOST_GROUPS;
    // log2 of the runs' channel groups (token-axis runs; see rowHalves), known when compiled for rows of one group
    const int keyShift = KEY_BITS ? 31 - __clz(D) : 31 - __clz(a.key.groupSize);
    const int valueShift = 31 - __clz(a.value.groupSize);     // only tileRow reads it

    // head h's queries, channels 8s + 2 quad and + 1 (zeros past the group), and their sums over each eight channels
    unsigned int q[STEPS];
    float eights[STEPS];
#pragma unroll
    for (int s = 0; s < STEPS; s++) {
        q[s] = h < g ? *(const unsigned int*) ((const __half*) a.query + outIndex(a, r, h, 8 * s + 2 * quad)) : 0u;
        float2 f = __half22float2(half2Of(q[s]));
        float sum = f.x + f.y;
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        eights[s] = sum;
    }
    unsigned int scaledHi[STEPS], scaledLo[STEPS];
    float scaledShift = 0.f;
    int scaledGroup = -1;

    // the split's tokens, a whole number of tiles to each warp
    const int start = blockIdx.y * a.tokensPerSplit;
    const int end = min(start + a.tokensPerSplit, r.total);
    const int per = ((end - start + KVQ_WARPS - 1) / KVQ_WARPS + KVQ_MMA_TILE - 1) / KVQ_MMA_TILE * KVQ_MMA_TILE;
    const int from = start + warp * per;
    const int to = min(from + per, end);

    float m = -INFINITY, l = 0.f;
    // the output transposed, values times weights (O^T = V^T P^T): channels 16 mt + lane / 4 ([0], [1]) and + 8 ([2],
    // [3]) of heads 2 quad ([0], [2]) and 2 quad + 1 ([1], [3]). This way round the weights are the B operand just
    // as the scores leave them, and no operand has rows of zeros to fill: half the products of P V, and none of the
    // copies that built a zero-padded operand for each.
    float acc[D / 16][4];
#pragma unroll
    for (int mt = 0; mt < D / 16; mt++) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.f;
    // the scores of head h for tokens first + 8 nt + 2 quad and + 1 in [0], [1]; [2], [3] are the zero rows 8-15 of
    // the queries' operand, kept across tiles so that nothing clears them
    float sc[2][4], part[4], plain[4];
#pragma unroll
    for (int e = 0; e < 4; e++) sc[0][e] = sc[1][e] = part[e] = plain[e] = 0.f;
    // head h's row of the mask, found once rather than for every score
    const __half* bias = biasRow<__half>(a, r, h) + 2 * quad;
    const bool value = lane >= 16;
    const int row = lane % 16;
    __half* const dst = (value ? values : keys) + row * PITCH;
    float2* const rowParams = params + row * MOST_GROUPS;
    RowAhead<D, KEY_BITS, VALUE_BITS> ahead;
    ahead.fetch(a, r, value, from + row, to);
    for (int first = from; first < to; first += KVQ_MMA_TILE) {
        if constexpr (KEY_BITS != 0) {
            const RowAhead<D, KEY_BITS, VALUE_BITS> now = ahead;
            ahead.fetch(a, r, value, first + KVQ_MMA_TILE + row, to);
            if (!plainRow<D, KEYS>(a, r, value, first + row, to, dst, rowParams)) now.decode(a, value, dst, rowParams);
        } else {
            tileRow<D, KEYS>(a, r, value, first + row, to, value ? valueShift : keyShift, dst, rowParams);
        }
        __syncwarp();
        const bool quantizedTile = first < a.quantized;
        if (KEYS == KVQ_KEYS_CHANNEL && quantizedTile && first / a.key.groupSize != scaledGroup) {
            scaledGroup = first / a.key.groupSize;
            scaleQueries<D>(a, r, scaledGroup, quad, q, scaledHi, scaledLo, scaledShift);
        }
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            sc[nt][0] = sc[nt][1] = 0.f;
            float sum = 0.f;                 // KEYS_TOKEN: the current channel group's queries' sum
            const bool plainRows = KEYS == KVQ_KEYS_CHANNEL && first + KVQ_MMA_TILE > a.quantized;
#pragma unroll
            for (int s4 = 0; s4 < STEPS; s4 += 4) {
                unsigned int k[4];     // the keys of tokens 8 nt to 8 nt + 7, channels 8 (s4 + i) to + 7
                ldmatrix4<false>(k, keys + (8 * nt + lane % 8) * PITCH + 8 * (s4 + lane / 8));
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int s = s4 + i;
                    if (KEYS == KVQ_KEYS_RAW) {
                        mma(sc[nt], q[s], 0u, k[i]);
                    } else if (KEYS == KVQ_KEYS_TOKEN) {
                        // KEYS_TOKEN: part holds the products of the current channel group
                        mma(part, q[s], 0u, k[i]);
                        sum += eights[s];
                        if ((8 * (s + 1) & ((1 << keyShift) - 1)) == 0) {
                            const int group = (8 * (s + 1) >> keyShift) - 1;
#pragma unroll
                            for (int e = 0; e < 2; e++) {
                                float2 f = params[(8 * nt + 2 * quad + e) * MOST_GROUPS + group];
                                sc[nt][e] += f.x * part[e] + f.y * sum;
                            }
                            part[0] = part[1] = 0.f;
                            sum = 0.f;
                        }
                    } else {
                        if (quantizedTile) {
                            mma(sc[nt], scaledHi[s], 0u, k[i]);
                            mma(sc[nt], scaledLo[s], 0u, k[i]);
                        }
                        // KEYS_CHANNEL: plain holds the products with float16 keys (rows past the history)
                        if (plainRows) mma(plain, q[s], 0u, k[i]);
                    }
                }
            }
            if (KEYS == KVQ_KEYS_CHANNEL) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    sc[nt][e] = first + 8 * nt + 2 * quad + e < a.quantized ? sc[nt][e] + scaledShift : plain[e];
                }
                plain[0] = plain[1] = 0.f;
            }
        }
        // online softmax of head h over the tile (its four lanes hold its sixteen scores)
        float x[2][2];
        float most = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                x[nt][e] = -INFINITY;
                if (first + 8 * nt + 2 * quad + e < to && h < g) {
                    x[nt][e] = sc[nt][e] * a.scale + __half2float(bias[first + 8 * nt + e]);
                }
                most = fmaxf(most, x[nt][e]);
            }
        }
        most = fmaxf(most, __shfl_xor_sync(0xffffffffu, most, 1));
        most = fmaxf(most, __shfl_xor_sync(0xffffffffu, most, 2));
        const float now = fmaxf(m, most);
        // 1 where the maximum stays (heads past the group's included, whose maximum stays -inf): no rescaling then
        const float alpha = m == now ? 1.f : m == -INFINITY ? 0.f : expFlush(m - now);
        unsigned int weights[2];
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            float p0 = now == -INFINITY ? 0.f : expFlush(x[nt][0] - now);
            float p1 = now == -INFINITY ? 0.f : expFlush(x[nt][1] - now);
            sum += p0 + p1;
            weights[nt] = pairOf(p0, p1);
        }
        l = l * alpha + sum;
        m = now;
        if (__any_sync(0xffffffffu, alpha != 1.f)) {    // after the first tiles a maximum seldom moves
            const float even = __shfl_sync(0xffffffffu, alpha, 8 * quad);        // head 2 quad's
            const float odd = __shfl_sync(0xffffffffu, alpha, 8 * quad + 4);     // head 2 quad + 1's
#pragma unroll
            for (int mt = 0; mt < D / 16; mt++) {
                acc[mt][0] *= even;
                acc[mt][1] *= odd;
                acc[mt][2] *= even;
                acc[mt][3] *= odd;
            }
        }
        // A: the values transposed, channels 16 mt to + 15 by tokens 0-7 (f[0], f[1]) and 8-15 (f[2], f[3]); B: the
        // weights, tokens 8 nt + 2 quad and + 1 of head lane / 4
#pragma unroll
        for (int mt = 0; mt < D / 16; mt++) {
            unsigned int f[4];
            ldmatrix4<true>(f, values + (8 * (lane / 16) + lane % 8) * PITCH + 16 * mt + 8 * ((lane / 8) & 1));
            mma(acc[mt], f[0], f[1], weights[0]);
            mma(acc[mt], f[2], f[3], weights[1]);
        }
        __syncwarp();
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);

    __syncthreads();     // every warp is done with its tiles, whose memory the join takes
    float* rows = (float*) shared;
    if (h < g && quad == 0) {
        rows[(warp * g + h) * (D + 2)] = m;
        rows[(warp * g + h) * (D + 2) + 1] = l;
    }
#pragma unroll
    for (int e = 0; e < 2; e++) {
        if (2 * quad + e < g) {
            float* p = rows + (warp * g + 2 * quad + e) * (D + 2) + 2 + lane / 4;
#pragma unroll
            for (int mt = 0; mt < D / 16; mt++) {
                p[16 * mt] = acc[mt][e];
                p[16 * mt + 8] = acc[mt][2 + e];
            }
        }
    }
    __syncthreads();
    joinWarps<__half>(a, r, rows);
}

template <typename T>
__device__ void combine(const KvqAttention& a) {
    const int D = a.headDim;
    const int g = a.group;
    const int row = blockIdx.x;
    const KvqRow r = rowOf(a);
    for (int o = threadIdx.x; o < g * D; o += blockDim.x) {
        int h = o / D, d = o % D;
        const float* p = a.partial + ((long long) row * a.splits * g + h) * (D + 2);
        long long stride = (long long) g * (D + 2);
        float m = -INFINITY;
        for (int s = 0; s < a.splits; s++) m = fmaxf(m, p[s * stride]);
        float l = 0.f, x = 0.f;
        if (m != -INFINITY) {
            for (int s = 0; s < a.splits; s++) {
                float ms = p[s * stride];
                float w = ms == -INFINITY ? 0.f : __expf(ms - m);
                l += p[s * stride + 1] * w;
                x += p[s * stride + 2 + d] * w;
            }
        }
        store<T>(a.out, outIndex(a, r, h, d), l > 0.f ? x / l : 0.f);
    }
}

// grid (B * launchKvHeads * t, splits), KVQ_THREADS threads
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_f16(const KvqAttention a) { attend<__half>(a); }
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_f32(const KvqAttention a) { attend<float>(a); }
// the same grid and parameters, each warp on tokens of its own (attendWarps): warps4 for at most 4 query heads per KV
// head, warps8 for at most 8
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_warps4_f16(const KvqAttention a) {
    attendWarps<4, __half>(a);
}
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_warps4_f32(const KvqAttention a) {
    attendWarps<4, float>(a);
}
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_warps8_f16(const KvqAttention a) {
    attendWarps<8, __half>(a);
}
extern "C" __global__ void __launch_bounds__(KVQ_THREADS) kvq_attention_warps8_f32(const KvqAttention a) {
    attendWarps<8, float>(a);
}
// the same grid and parameters on the tensor cores (attendMma), float16 models: head size 64 or 128, by how the keys
// are held
#define KVQ_MMA_ENTRY(D, NAME, KEYS, BOUNDS) \
    extern "C" __global__ void BOUNDS kvq_attention_mma##D##_##NAME##_f16(const KvqAttention a) { \
        attendMma<D, KEYS>(a); \
    }
// per-token caches whose rows are one group of KB-bit keys and VB-bit values: kvq_attention_mma64_k4v4_f16 took 0.71x
// the time of kvq_attention_mma64_token_f16 on the same KV4 cache at 111 x 4k on an H200
// (docs/results/gpu/fused/kernel-rows)
#define KVQ_MMA_ROWS(D, KB, VB, BOUNDS) \
    extern "C" __global__ void BOUNDS kvq_attention_mma##D##_k##KB##v##VB##_f16(const KvqAttention a) { \
        attendMma<D, KVQ_KEYS_TOKEN, KB, VB>(a); \
    }
// codes with heads of 64: at most 128 registers, so that four blocks fit on an SM, not three. Left free they took 133
// and 154; held to 128 they spill 20 and 100 bytes, and KV4 at 32 x 4k on an H200 went from 116.0 to 91.8 us per
// layer (the kernel waits on latency far more than it issues; docs/results/gpu/fused/kernel-occupancy)
#define KVQ_MMA_FOUR __launch_bounds__(KVQ_THREADS, 4)
KVQ_MMA_ENTRY(64, raw, KVQ_KEYS_RAW, __launch_bounds__(KVQ_THREADS))
KVQ_MMA_ENTRY(64, token, KVQ_KEYS_TOKEN, KVQ_MMA_FOUR)
KVQ_MMA_ENTRY(64, channel, KVQ_KEYS_CHANNEL, KVQ_MMA_FOUR)
KVQ_MMA_ENTRY(128, raw, KVQ_KEYS_RAW, __launch_bounds__(KVQ_THREADS))
KVQ_MMA_ENTRY(128, token, KVQ_KEYS_TOKEN, __launch_bounds__(KVQ_THREADS))
KVQ_MMA_ENTRY(128, channel, KVQ_KEYS_CHANNEL, __launch_bounds__(KVQ_THREADS))
// KVTuner's pairs
#define KVQ_MMA_PAIRS(D, BOUNDS) \
    KVQ_MMA_ROWS(D, 8, 8, BOUNDS) KVQ_MMA_ROWS(D, 8, 4, BOUNDS) KVQ_MMA_ROWS(D, 4, 4, BOUNDS) \
    KVQ_MMA_ROWS(D, 4, 2, BOUNDS) KVQ_MMA_ROWS(D, 2, 2, BOUNDS)
KVQ_MMA_PAIRS(64, KVQ_MMA_FOUR)
KVQ_MMA_PAIRS(128, __launch_bounds__(KVQ_THREADS))
// grid (B * launchKvHeads * t), any block size
extern "C" __global__ void kvq_attention_combine_f16(const KvqAttention a) { combine<__half>(a); }
extern "C" __global__ void kvq_attention_combine_f32(const KvqAttention a) { combine<float>(a); }
