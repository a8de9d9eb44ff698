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

// Chunk c of a row of codes (16 bytes), as four words.
__device__ __forceinline__ void chunkWords(const unsigned char* row, int c, unsigned int (&words)[4]) {
    if ((((unsigned long long) row) & 15ull) == 0) {
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
template <int BITS, typename Plane>
__device__ __forceinline__ void forEachPlane(const unsigned char* row, int d0, int count, Plane plane) {
    constexpr int PLANES = 8 / BITS;
    constexpr int PER_CHUNK = 16 * PLANES;
    for (int c = d0 / PER_CHUNK; c < (d0 + count) / PER_CHUNK; c++) {
        unsigned int words[4];
        chunkWords(row, c, words);
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

// The additive mask of query head k of the group at position j.
template <typename T>
__device__ __forceinline__ float biasAt(const KvqAttention& a, const KvqRow& r, int k, int j) {
    return load<T>(a.bias, r.b * a.biasBatchStride + (long long) (r.kvh * a.group + k) * a.biasHeadStride
            + (long long) r.qi * r.total + j);
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

// The same attention with each of the block's warps working through tokens of its own: a lane decodes one token's key
// (its dot products with the group's queries) and value (into the warp's rows of shared memory), and each warp keeps
// its own online softmax, so the block synchronizes only to join its warps at the end. A lane accumulates its output
// channels for every query head of the group, so a value read from shared memory serves all of them.
#define KVQ_WARPS (KVQ_THREADS / 32)
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
    for (int o = tid; o < g * D; o += KVQ_THREADS) {
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
// grid (B * launchKvHeads * t), any block size
extern "C" __global__ void kvq_attention_combine_f16(const KvqAttention a) { combine<__half>(a); }
extern "C" __global__ void kvq_attention_combine_f32(const KvqAttention a) { combine<float>(a); }
