// kvq's one CUDA kernel: a decode step's many small uploads in a single launch. The pieces and their table lie in
// page-locked host memory, which every device with unified addressing reads at the same address, so nothing is
// copied to the device first. Compiled to PTX by tools/build_kernels.sh; the PTX is a resource of kvq-runtime-onnx.

// One piece per row of the table, six 64-bit words: source address (host), destination address (device),
// destination pitch, row width in bytes, rows, source pitch.
extern "C" __global__ void kvq_scatter(const unsigned long long* table, unsigned int pieces) {
    for (unsigned int p = blockIdx.x; p < pieces; p += gridDim.x) {
        const unsigned long long* piece = table + 6ull * p;
        const unsigned char* src = (const unsigned char*) piece[0];
        unsigned char* dst = (unsigned char*) piece[1];
        unsigned long long dstPitch = piece[2];
        unsigned long long width = piece[3];
        unsigned long long total = width * piece[4];
        unsigned long long srcPitch = piece[5];
        for (unsigned long long i = threadIdx.x; i < total; i += blockDim.x) {
            unsigned long long row = i / width;
            unsigned long long column = i - row * width;
            dst[row * dstPitch + column] = src[row * srcPitch + column];
        }
    }
}
