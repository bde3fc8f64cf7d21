// Max-pooling over channels-last (N, H, W, C) maps, windows pool x pool moved by stride.
// Forward writes the maximum and the offset idx = i * pool + j of the *first* maximum of
// the window in row-major order (a later value wins only if strictly greater), the same
// rule as minisiamese.ops.maxpool2d_forward.  Backward is a gather over input pixels: each
// sums dout of the windows that contain it and chose it, so overlapping windows need no
// atomics.

template <typename T>
__device__ void maxpool_fwd_impl(const T* __restrict__ x, T* __restrict__ out,
                                 unsigned char* __restrict__ idx, int N, int H, int W, int C,
                                 int pool, int stride, int OH, int OW) {
    const long long total = (long long)N * OH * OW * C;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (long long)blockDim.x * gridDim.x) {
        long long t = o;
        const int c = t % C;   t /= C;
        const int ow = t % OW; t /= OW;
        const int oh = t % OH;
        const int n = (int)(t / OH);
        const T* base = x + (((long long)n * H + oh * stride) * W + ow * stride) * C + c;
        T best = base[0];
        int arg = 0;
        for (int i = 0; i < pool; ++i) {
            for (int j = 0; j < pool; ++j) {
                const T v = base[((long long)i * W + j) * C];
                if (v > best) { best = v; arg = i * pool + j; }
            }
        }
        out[o] = best;
        idx[o] = (unsigned char)arg;
    }
}

template <typename T>
__device__ void maxpool_bwd_impl(const T* __restrict__ dout, const unsigned char* __restrict__ idx,
                                 T* __restrict__ dx, int N, int H, int W, int C,
                                 int pool, int stride, int OH, int OW) {
    const long long total = (long long)N * H * W * C;
    for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < total;
         p += (long long)blockDim.x * gridDim.x) {
        long long t = p;
        const int c = t % C;  t /= C;
        const int w = t % W;  t /= W;
        const int h = t % H;
        const int n = (int)(t / H);
        // windows oh with oh*stride <= h < oh*stride + pool
        const int oh_lo = h >= pool ? (h - pool) / stride + 1 : 0;
        const int ow_lo = w >= pool ? (w - pool) / stride + 1 : 0;
        const int oh_hi = min(h / stride, OH - 1);
        const int ow_hi = min(w / stride, OW - 1);
        T acc = 0;
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                const long long o = (((long long)n * OH + oh) * OW + ow) * C + c;
                if (idx[o] == (h - oh * stride) * pool + (w - ow * stride)) acc += dout[o];
            }
        }
        dx[p] = acc;
    }
}

extern "C" __global__ void maxpool_fwd_nhwc_f32(const float* x, float* out, unsigned char* idx, int N, int H,
                                                int W, int C, int pool, int stride, int OH, int OW) {
    maxpool_fwd_impl<float>(x, out, idx, N, H, W, C, pool, stride, OH, OW);
}
extern "C" __global__ void maxpool_fwd_nhwc_f64(const double* x, double* out, unsigned char* idx, int N, int H,
                                                int W, int C, int pool, int stride, int OH, int OW) {
    maxpool_fwd_impl<double>(x, out, idx, N, H, W, C, pool, stride, OH, OW);
}
extern "C" __global__ void maxpool_bwd_nhwc_f32(const float* dout, const unsigned char* idx, float* dx, int N,
                                                int H, int W, int C, int pool, int stride, int OH, int OW) {
    maxpool_bwd_impl<float>(dout, idx, dx, N, H, W, C, pool, stride, OH, OW);
}
extern "C" __global__ void maxpool_bwd_nhwc_f64(const double* dout, const unsigned char* idx, double* dx, int N,
                                                int H, int W, int C, int pool, int stride, int OH, int OW) {
    maxpool_bwd_impl<double>(dout, idx, dx, N, H, W, C, pool, stride, OH, OW);
}
