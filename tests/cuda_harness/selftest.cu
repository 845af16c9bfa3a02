// Small kernels, in CUDA syntax, that check the harness itself: the order of threads depends on
// the seed, barriers and warp intrinsics synchronise, shuffles move the right values, launches
// a GPU refuses fail, and a kernel that would hang ends with an error.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <cuda_runtime.h>

namespace selftest {

// Each thread takes a ticket: the ticket order is the order threads ran in.
__global__ void order_kernel(int* counter, int* order) {
  order[atomicAdd(counter, 1)] = static_cast<int>(threadIdx.x);
}

// Thread i writes slot i, then reads slot i+1: right only if a barrier separates the two.
template <bool kBarrier> __global__ void neighbour_kernel(int* out) {
  __shared__ int slot[64];
  slot[threadIdx.x] = static_cast<int>(threadIdx.x) * 10;
  if (kBarrier) __syncthreads();
  out[threadIdx.x] = slot[(threadIdx.x + 1) % blockDim.x];
}

__global__ void shuffle_kernel(int* out) {
  const int v = static_cast<int>(threadIdx.x) * 3 + 1;
  const int n = blockDim.x;
  const int i = threadIdx.x;
  out[i] = __shfl_down_sync(0xffffffffu, v, 5);
  out[n + i] = __shfl_up_sync(0xffffffffu, v, 3);
  out[2 * n + i] = __shfl_xor_sync(0xffffffffu, v, 6);
  out[3 * n + i] = __shfl_sync(0xffffffffu, v, 7);
  out[4 * n + i] = __shfl_down_sync(0xffffffffu, v, 2, 8);
}

// Warp sum by shuffles, then one atomicAdd per warp into shared memory, then a barrier.
__global__ void reduce_kernel(const float* in, float* out) {
  __shared__ float total;
  if (threadIdx.x == 0) total = 0.f;
  __syncthreads();
  float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(&total, v);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

__global__ void empty_kernel() {}

__global__ void big_shared_kernel(float* out) {
  __shared__ float a[8192];
  __shared__ float b[8192];  // 64 KiB together
  a[threadIdx.x] = 1.f;
  b[threadIdx.x] = 2.f;
  out[0] = a[0] + b[0];
}

// Lanes 0..15 wait at a barrier, lanes 16..31 at a full-warp shuffle: a hang on a GPU.
__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
  }
}

int fails = 0;

void expect(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  if (!ok) ++fails;
}

cudaError_t launch_empty(dim3 grid, dim3 block) {
  empty_kernel<<<grid, block>>>();
  return cudaGetLastError();
}

}  // namespace selftest

// Runs every check; returns the number of failures.
int run_selftest(uint64_t (*with_seed)(uint64_t)) {
  using namespace selftest;
  // 1. The order of threads between sync points depends on the seed.
  std::vector<std::vector<int>> orders;
  for (uint64_t seed : {1, 2}) {
    with_seed(seed);
    int counter = 0;
    std::vector<int> order(128, -1);
    order_kernel<<<1, 128>>>(&counter, order.data());
    expect(cudaGetLastError() == cudaSuccess && counter == 128, "order kernel runs every thread");
    orders.push_back(order);
  }
  expect(orders[0] != orders[1], "thread order differs between seeds");
  // 2. A missing barrier shows; a present one makes the result exact.
  std::vector<int> out(64);
  bool exact = true, racy_seen = false;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    with_seed(seed);
    neighbour_kernel<true><<<1, 64>>>(out.data());
    for (int i = 0; i < 64; ++i) exact &= out[i] == (i + 1) % 64 * 10;
    neighbour_kernel<false><<<1, 64>>>(out.data());
    for (int i = 0; i < 64; ++i) racy_seen |= out[i] != (i + 1) % 64 * 10;
  }
  expect(exact, "with __syncthreads every thread reads its neighbour's value");
  expect(racy_seen, "without __syncthreads some thread reads uninitialised shared memory");
  // 3. Shuffles move the values a GPU moves.
  std::vector<int> sh(5 * 64);
  shuffle_kernel<<<1, 64>>>(sh.data());
  bool shuffles = true;
  for (int i = 0; i < 64; ++i) {
    const int lane = i % 32, base = i - lane;
    auto v = [](int t) { return t * 3 + 1; };
    shuffles &= sh[i] == v(lane + 5 < 32 ? i + 5 : i);
    shuffles &= sh[64 + i] == v(lane >= 3 ? i - 3 : i);
    shuffles &= sh[128 + i] == v(base + (lane ^ 6));
    shuffles &= sh[192 + i] == v(base + 7);
    shuffles &= sh[256 + i] == v(lane % 8 + 2 < 8 ? i + 2 : i);
  }
  expect(shuffles, "__shfl_down/up/xor/_sync give the lanes a GPU gives");
  // 4. Warp shuffles + shared atomics + barrier reduce exactly.
  std::vector<float> in(4 * 256), sums(4);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7);
  reduce_kernel<<<4, 256>>>(in.data(), sums.data());
  bool reduced = cudaGetLastError() == cudaSuccess;
  for (int b = 0; b < 4; ++b) {
    float want = 0;
    for (int i = 0; i < 256; ++i) want += in[b * 256 + i];
    reduced &= sums[b] == want;
  }
  expect(reduced, "warp shuffle + shared atomicAdd + barrier reduction");
  // 5. Launch limits.
  expect(launch_empty(1, 1024) == cudaSuccess, "1024 threads per block launch");
  expect(launch_empty(1, 1025) == cudaErrorInvalidConfiguration, "1025 threads per block are refused");
  expect(launch_empty(1, dim3(1, 1, 65)) == cudaErrorInvalidConfiguration, "block z 65 is refused");
  expect(launch_empty(dim3(1, 65535, 1), 1) == cudaSuccess, "grid y 65535 launches");
  expect(launch_empty(dim3(1, 65536, 1), 1) == cudaErrorInvalidConfiguration, "grid y 65536 is refused");
  expect(launch_empty(dim3(1, 1, 65536), 1) == cudaErrorInvalidConfiguration, "grid z 65536 is refused");
  expect(launch_empty(0, 32) == cudaErrorInvalidConfiguration, "an empty grid is refused");
  float sink = 0;
  big_shared_kernel<<<1, 32>>>(&sink);
  expect(cudaGetLastError() != cudaSuccess, "64 KiB of static shared memory is refused");
  // 6. A kernel that would hang ends with an error.
  std::vector<int> dl(32);
  deadlock_kernel<<<1, 32>>>(dl.data());
  expect(cudaGetLastError() == cudaErrorLaunchFailure, "barrier / shuffle deadlock is reported");
  expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
  return fails;
}
