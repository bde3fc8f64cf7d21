// Elementwise kernels: fused bias + ReLU, the ReLU gradient, and the Adam update.
// All are grid-stride loops over n elements of contiguous arrays.

template <typename T>
__device__ void bias_relu_fwd_impl(T* __restrict__ y, const T* __restrict__ b, long long n, int C) {
    // y (..., C) channels-last, in place: y = max(y + b[c], 0)
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        const T v = y[k] + b[k % C];
        y[k] = v > (T)0 ? v : (T)0;
    }
}

template <typename T>
__device__ void relu_bwd_impl(const T* __restrict__ dout, const T* __restrict__ y, T* __restrict__ dx,
                              long long n) {
    // dx = dout where the ReLU's output is positive, else 0 (subgradient 0 at 0)
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        dx[k] = y[k] > (T)0 ? dout[k] : (T)0;
    }
}

template <typename T>
__device__ void adam_impl(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                          long long n, T alpha, T beta1, T beta2, T eps) {
    // m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  w <- w - alpha m / (sqrt(v) + eps),
    // alpha = lr sqrt(1 - b2^t) / (1 - b1^t) computed on the host (minisiamese.optim.Adam).
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        const T gk = g[k];
        const T mk = beta1 * m[k] + ((T)1 - beta1) * gk;
        const T vk = beta2 * v[k] + ((T)1 - beta2) * (gk * gk);
        m[k] = mk;
        v[k] = vk;
        w[k] -= alpha * mk / (sqrt(vk) + eps);
    }
}

extern "C" __global__ void bias_relu_fwd_f32(float* y, const float* b, long long n, int C) {
    bias_relu_fwd_impl<float>(y, b, n, C);
}
extern "C" __global__ void bias_relu_fwd_f64(double* y, const double* b, long long n, int C) {
    bias_relu_fwd_impl<double>(y, b, n, C);
}
extern "C" __global__ void relu_bwd_f32(const float* dout, const float* y, float* dx, long long n) {
    relu_bwd_impl<float>(dout, y, dx, n);
}
extern "C" __global__ void relu_bwd_f64(const double* dout, const double* y, double* dx, long long n) {
    relu_bwd_impl<double>(dout, y, dx, n);
}
extern "C" __global__ void adam_update_f32(float* w, const float* g, float* m, float* v, long long n,
                                           float alpha, float beta1, float beta2, float eps) {
    adam_impl<float>(w, g, m, v, n, alpha, beta1, beta2, eps);
}
extern "C" __global__ void adam_update_f64(double* w, const double* g, double* m, double* v, long long n,
                                           double alpha, double beta1, double beta2, double eps) {
    adam_impl<double>(w, g, m, v, n, alpha, beta1, beta2, eps);
}
