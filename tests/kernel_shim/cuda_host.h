// Just enough of CUDA's vocabulary to compile kernels/*.cu as plain C++ on the
// host.  A "launch" runs every (block, thread) of a 1-D grid one after another,
// so the kernels' index arithmetic and grid-stride loops can be checked against
// NumPy on a machine without a GPU.  Kernels that need __syncthreads or shared
// memory would not run correctly here; ours use neither.
#pragma once
#include <algorithm>
#include <cmath>

struct ShimDim3 { unsigned x = 1, y = 1, z = 1; };
extern ShimDim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
using std::min;
using std::max;

template <typename... Params, typename... Args>
void shim_launch(void (*kernel)(Params...), unsigned grid, unsigned block, Args... args) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        for (unsigned t = 0; t < block; ++t) {
            threadIdx.x = t;
            kernel(args...);
        }
    }
}
