// Host build of the CUDA kernels for CPU tests (see cuda_host.h).  Each
// shim_<kernel> runs the kernel over a grid of `grid` blocks of `block` threads.
#include "cuda_host.h"

ShimDim3 blockIdx, threadIdx, blockDim, gridDim;

// the kernel sources, found through -I (the repository's kernels/, or an installed package's)
#include "im2col.cu"
#include "maxpool.cu"
#include "elementwise.cu"

#define UNPAREN(...) __VA_ARGS__
#define SHIM(name, params, args) \
    extern "C" void shim_##name params { shim_launch(name, grid, block, UNPAREN args); }

#define CONV_PARAMS(T) (unsigned grid, unsigned block, const T* a, T* b, int N, int H, int W, int C, int KH, \
                        int KW, int stride, int pad, int OH, int OW)
#define CONV_ARGS (a, b, N, H, W, C, KH, KW, stride, pad, OH, OW)
SHIM(im2col_nhwc_f32, CONV_PARAMS(float), CONV_ARGS)
SHIM(im2col_nhwc_f64, CONV_PARAMS(double), CONV_ARGS)
SHIM(col2im_nhwc_f32, CONV_PARAMS(float), CONV_ARGS)
SHIM(col2im_nhwc_f64, CONV_PARAMS(double), CONV_ARGS)

#define POOLF_PARAMS(T) (unsigned grid, unsigned block, const T* x, T* out, unsigned char* idx, int N, int H, \
                         int W, int C, int pool, int stride, int OH, int OW)
#define POOLB_PARAMS(T) (unsigned grid, unsigned block, const T* dout, const unsigned char* idx, T* dx, int N, \
                         int H, int W, int C, int pool, int stride, int OH, int OW)
SHIM(maxpool_fwd_nhwc_f32, POOLF_PARAMS(float), (x, out, idx, N, H, W, C, pool, stride, OH, OW))
SHIM(maxpool_fwd_nhwc_f64, POOLF_PARAMS(double), (x, out, idx, N, H, W, C, pool, stride, OH, OW))
SHIM(maxpool_bwd_nhwc_f32, POOLB_PARAMS(float), (dout, idx, dx, N, H, W, C, pool, stride, OH, OW))
SHIM(maxpool_bwd_nhwc_f64, POOLB_PARAMS(double), (dout, idx, dx, N, H, W, C, pool, stride, OH, OW))

SHIM(bias_relu_fwd_f32, (unsigned grid, unsigned block, float* y, const float* b, long long n, int C), (y, b, n, C))
SHIM(bias_relu_fwd_f64, (unsigned grid, unsigned block, double* y, const double* b, long long n, int C), (y, b, n, C))
SHIM(relu_bwd_f32, (unsigned grid, unsigned block, const float* d, const float* y, float* dx, long long n),
     (d, y, dx, n))
SHIM(relu_bwd_f64, (unsigned grid, unsigned block, const double* d, const double* y, double* dx, long long n),
     (d, y, dx, n))
SHIM(adam_update_f32, (unsigned grid, unsigned block, float* w, const float* g, float* m, float* v, long long n,
                       float alpha, float b1, float b2, float eps), (w, g, m, v, n, alpha, b1, b2, eps))
SHIM(adam_update_f64, (unsigned grid, unsigned block, double* w, const double* g, double* m, double* v,
                       long long n, double alpha, double b1, double b2, double eps),
     (w, g, m, v, n, alpha, b1, b2, eps))
