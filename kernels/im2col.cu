// im2col / col2im for channels-last (N, H, W, C) images.
//   cols (N*OH*OW, KH*KW*C): row = (n, oh, ow), column = (i, j, c)
// Same layout as minisiamese/im2col.py.  Every kernel is a grid-stride loop
// over the elements it *writes*, so col2im is a gather: each input pixel sums
// the column entries that were read from it, with no atomics.

template <typename T>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ cols,
                            int N, int H, int W, int C, int KH, int KW,
                            int stride, int pad, int OH, int OW) {
    const long long total = (long long)N * OH * OW * KH * KW * C;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        long long t = idx;
        const int c = t % C;   t /= C;
        const int j = t % KW;  t /= KW;
        const int i = t % KH;  t /= KH;
        const int ow = t % OW; t /= OW;
        const int oh = t % OH;
        const int n = (int)(t / OH);
        const int h = oh * stride - pad + i;
        const int w = ow * stride - pad + j;
        cols[idx] = (h >= 0 && h < H && w >= 0 && w < W)
                        ? x[(((long long)n * H + h) * W + w) * C + c] : (T)0;
    }
}

template <typename T>
__device__ void col2im_impl(const T* __restrict__ cols, T* __restrict__ dx,
                            int N, int H, int W, int C, int KH, int KW,
                            int stride, int pad, int OH, int OW) {
    const long long total = (long long)N * H * W * C;
    const long long row_len = (long long)KH * KW * C;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        long long t = idx;
        const int c = t % C;  t /= C;
        const int w = t % W;  t /= W;
        const int h = t % H;
        const int n = (int)(t / H);
        const int hp = h + pad, wp = w + pad;     // position in the padded image
        T acc = 0;
        for (int i = 0; i < KH; ++i) {
            const int dh = hp - i;                // = oh * stride when window oh covers this pixel
            if (dh < 0 || dh % stride) continue;
            const int oh = dh / stride;
            if (oh >= OH) continue;
            for (int j = 0; j < KW; ++j) {
                const int dw = wp - j;
                if (dw < 0 || dw % stride) continue;
                const int ow = dw / stride;
                if (ow >= OW) continue;
                acc += cols[(((long long)n * OH + oh) * OW + ow) * row_len + (i * KW + j) * C + c];
            }
        }
        dx[idx] = acc;
    }
}

extern "C" __global__ void im2col_nhwc_f32(const float* x, float* cols, int N, int H, int W, int C, int KH,
                                           int KW, int stride, int pad, int OH, int OW) {
    im2col_impl<float>(x, cols, N, H, W, C, KH, KW, stride, pad, OH, OW);
}
extern "C" __global__ void im2col_nhwc_f64(const double* x, double* cols, int N, int H, int W, int C, int KH,
                                           int KW, int stride, int pad, int OH, int OW) {
    im2col_impl<double>(x, cols, N, H, W, C, KH, KW, stride, pad, OH, OW);
}
extern "C" __global__ void col2im_nhwc_f32(const float* cols, float* dx, int N, int H, int W, int C, int KH,
                                           int KW, int stride, int pad, int OH, int OW) {
    col2im_impl<float>(cols, dx, N, H, W, C, KH, KW, stride, pad, OH, OW);
}
extern "C" __global__ void col2im_nhwc_f64(const double* cols, double* dx, int N, int H, int W, int C, int KH,
                                           int KW, int stride, int pad, int OH, int OW) {
    col2im_impl<double>(cols, dx, N, H, W, C, KH, KW, stride, pad, OH, OW);
}
