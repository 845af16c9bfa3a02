// The CPU side of cuda_harness.h: fibers for GPU threads, the per-block scheduler, launch checks
// as a GPU makes them, and the few CUDA runtime calls the launchers make.
//
// Scheduling: a block's threads are fibers. The scheduler resumes a ready thread drawn at
// random (splitmix64 of $CUDA_HARNESS_SEED, the launch number and the block), which runs until
// it reaches a barrier or a warp intrinsic, or returns. A barrier opens when every thread that
// has not returned waits at it; a warp rendezvous completes when every lane its mask names has
// arrived. Blocks run one after another; a kernel that would hang on a GPU (a barrier some live
// thread never reaches, a shuffle naming a lane that returned) ends the launch with an error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "cuda_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define HARNESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HARNESS_ASAN 1
#endif
#endif
#if defined(HARNESS_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(HARNESS_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cuda_harness {

uint3 g_thread_idx;
uint3 g_block_idx;
dim3 g_block_dim;
dim3 g_grid_dim;

namespace {

// GPU limits (compute capability 8.x / 9.x): what a launch may ask for.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockZ = 64;
constexpr unsigned kMaxGridX = 2147483647u;
constexpr unsigned kMaxGridYZ = 65535;
constexpr size_t kMaxSharedPerBlock = 48 * 1024;  // without the opt-in attribute
constexpr int kWarp = 32;
constexpr size_t kStackBytes = 256 * 1024;

// ------------------------------------------------------------------------------------------
// Context switch. x86-64: callee-saved registers, MXCSR and the x87 control word on the stack
// (glibc's swapcontext also saves the signal mask, a system call per switch).
// ------------------------------------------------------------------------------------------
#if defined(__x86_64__)
extern "C" void cuda_harness_switch(void** save_sp, void* load_sp);
extern "C" void cuda_harness_trampoline();
asm(R"(
.text
.globl cuda_harness_switch
.type cuda_harness_switch,@function
cuda_harness_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size cuda_harness_switch,.-cuda_harness_switch
.globl cuda_harness_trampoline
.type cuda_harness_trampoline,@function
cuda_harness_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
.size cuda_harness_trampoline,.-cuda_harness_trampoline
.section .note.GNU-stack,"",@progbits
.text
)");

struct Context {
  void* sp = nullptr;
};
#else
struct Context {
  ucontext_t uc;
};
#endif

// Byte copy the sanitizers' interceptors do not see (memcpy / memset are intercepted even in
// uninstrumented code, and TSan would take the scheduler's copies for the fibers' races).
void copy_bytes(void* dst, const void* src, size_t n) {
  auto* d = static_cast<volatile unsigned char*>(dst);
  const auto* s = static_cast<const volatile unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) d[i] = s[i];
}

enum class State { kReady, kBarrier, kWarp, kDone };

struct Fiber {
  Context ctx;
  char* stack = nullptr;
  uint3 idx;
  int linear = 0;
  State state = State::kReady;
  bool started = false;
  size_t shared_seen = 0;  // __shared__ declarations this thread has executed
  // Warp rendezvous: what this lane gives, whom it reads, what it gets.
  unsigned mask = 0;
  unsigned char value[16];
  size_t size = 0;
  int src = 0;
  unsigned char result[16];
#if defined(HARNESS_TSAN)
  void* tsan = nullptr;
#endif
};

struct Rng {
  uint64_t s;
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<int> ready;
  std::vector<void*> shared;
  std::vector<size_t> shared_sizes;
  size_t shared_bytes = 0;
  int live = 0;
  int at_barrier = 0;
  cudaError_t error = cudaSuccess;
  std::string why;
};

Context g_scheduler;
Block g_block;
Fiber* g_current = nullptr;
void (*g_body)(void*) = nullptr;
void* g_body_ctx = nullptr;
uint64_t g_launches = 0;
cudaError_t g_last_error = cudaSuccess;
std::mutex g_launch_mutex;  // one launch at a time: the scheduler state above is global
#if defined(HARNESS_ASAN)
void* g_scheduler_fake_stack = nullptr;
const void* g_scheduler_stack_bottom = nullptr;
size_t g_scheduler_stack_size = 0;
#endif
#if defined(HARNESS_TSAN)
void* g_scheduler_tsan = nullptr;
#endif

// Switches from the running fiber (or the scheduler) to `to` (nullptr: the scheduler).
// `exiting`: the running fiber never resumes (its ASan fake stack is released).
void switch_to(Fiber* to, bool exiting = false) {
  Fiber* from = g_current;
#if defined(HARNESS_ASAN)
  void* fake = nullptr;
  if (to) {
    __sanitizer_start_switch_fiber(&fake, to->stack, kStackBytes);
  } else {
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, g_scheduler_stack_bottom,
                                   g_scheduler_stack_size);
  }
#endif
#if defined(HARNESS_TSAN)
  // Fibers of a block are concurrent for the race detector: no switch orders them. The block's
  // start and end (fiber_main, run_block), barriers and warp rendezvous add happens-before.
  __tsan_switch_to_fiber(to ? to->tsan : g_scheduler_tsan, __tsan_switch_to_fiber_no_sync);
#endif
  g_current = to;
  if (to) g_thread_idx = to->idx;
#if defined(__x86_64__)
  void** save = from ? &from->ctx.sp : &g_scheduler.sp;
  cuda_harness_switch(save, to ? to->ctx.sp : g_scheduler.sp);
#else
  swapcontext(from ? &from->ctx.uc : &g_scheduler.uc, to ? &to->ctx.uc : &g_scheduler.uc);
#endif
#if defined(HARNESS_ASAN)
  // Back on `from`'s stack; a fiber learns the scheduler's stack (the one it came from).
  if (from) {
    __sanitizer_finish_switch_fiber(fake, &g_scheduler_stack_bottom, &g_scheduler_stack_size);
  } else {
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
  }
#endif
}

#if defined(HARNESS_TSAN)
char g_tsan_block_start, g_tsan_block_end;
// Happens-before of a barrier / warp rendezvous: every participant releases before it waits
// and acquires after it is let through.
char g_tsan_sync_object;
void tsan_release(const void* object) { __tsan_release(const_cast<void*>(object)); }
void tsan_acquire(const void* object) { __tsan_acquire(const_cast<void*>(object)); }
#endif

void fiber_main(void*) {
#if defined(HARNESS_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &g_scheduler_stack_bottom, &g_scheduler_stack_size);
#endif
#if defined(HARNESS_TSAN)
  __tsan_acquire(&g_tsan_block_start);
#endif
  g_body(g_body_ctx);
#if defined(HARNESS_TSAN)
  __tsan_release(&g_tsan_block_end);
#endif
  g_current->state = State::kDone;
  switch_to(nullptr, true);
  std::abort();  // a finished fiber is never resumed
}

// Stacks are kept for the process: a block of 1024 threads maps 256 MiB of address space,
// of which only the touched pages are backed.
std::vector<char*> g_stacks;

char* stack_for(size_t i) {
  while (g_stacks.size() <= i) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "cuda_harness: cannot map a fiber stack\n");
      std::abort();
    }
    g_stacks.push_back(static_cast<char*>(p));
  }
  return g_stacks[i];
}

void init_fiber(Fiber& f, size_t i) {
  f.stack = stack_for(i);
#if defined(HARNESS_ASAN)
  __asan_unpoison_memory_region(f.stack, kStackBytes);
#endif
#if defined(__x86_64__)
  // Frame that cuda_harness_switch pops: 8 bytes MXCSR / FPU control word, r15..rbp, and the
  // return address (the trampoline, which calls fiber_main(r12) via r13 on a 16-byte aligned
  // stack).
  auto* top = reinterpret_cast<uint64_t*>(f.stack + kStackBytes);
  uint64_t* sp = top - 2;  // 16-byte aligned after the trampoline's return-address pop
  *--sp = reinterpret_cast<uint64_t>(&cuda_harness_trampoline);
  *--sp = 0;                                           // rbp
  *--sp = 0;                                           // rbx
  *--sp = 0;                                           // r12 (set below)
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);     // r13
  *--sp = 0;                                           // r14
  *--sp = 0;                                           // r15
  *--sp = 0;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[4] = reinterpret_cast<uint64_t>(&f);  // r12
  f.ctx.sp = sp;
#else
  getcontext(&f.ctx.uc);
  f.ctx.uc.uc_stack.ss_sp = f.stack;
  f.ctx.uc.uc_stack.ss_size = kStackBytes;
  f.ctx.uc.uc_link = nullptr;
  makecontext(&f.ctx.uc, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
#if defined(HARNESS_TSAN)
  // Kept for the process like the stacks: destroying a TSan fiber returns its pages to the OS.
  static std::vector<void*> tsan_fibers;
  while (tsan_fibers.size() <= i) tsan_fibers.push_back(__tsan_create_fiber(0));
  f.tsan = tsan_fibers[i];
#endif
}

void fail_block(cudaError_t err, std::string why) {
  if (g_block.error == cudaSuccess) {
    g_block.error = err;
    g_block.why = std::move(why);
  }
}

// Called on the scheduler after a thread stopped: opens the barrier / completes the warp
// rendezvous it may have finished.
void settle(Fiber& f) {
  Block& b = g_block;
  if (f.state == State::kDone) --b.live;
  if (f.state == State::kBarrier) ++b.at_barrier;
  if (b.live > 0 && b.at_barrier == b.live) {
    b.at_barrier = 0;
    for (size_t i = 0; i < b.fibers.size(); ++i)
      if (b.fibers[i].state == State::kBarrier) {
        b.fibers[i].state = State::kReady;
        b.ready.push_back(static_cast<int>(i));
      }
    return;
  }
  // Warp rendezvous of f's warp: complete when every arrived lane's mask names only arrived
  // lanes; a mask naming a lane that returned can never complete.
  const int warp0 = f.linear / kWarp * kWarp;
  const int lanes = std::min<int>(kWarp, static_cast<int>(b.fibers.size()) - warp0);
  unsigned arrived = 0, wanted = 0, done = 0;
  for (int l = 0; l < lanes; ++l) {
    const Fiber& g = b.fibers[warp0 + l];
    if (g.state == State::kWarp) {
      arrived |= 1u << l;
      wanted |= g.mask;
    }
    if (g.state == State::kDone) done |= 1u << l;
  }
  if (!arrived) return;
  if (wanted & done) {
    fail_block(cudaErrorIllegalInstruction, "a warp intrinsic's mask names a lane that has returned");
    return;
  }
  if ((wanted & ~arrived) != 0) return;
  for (int l = 0; l < lanes; ++l) {
    Fiber& g = b.fibers[warp0 + l];
    if (g.state != State::kWarp) continue;
    const int src = g.src - warp0;
    const Fiber& from = (src >= 0 && src < lanes && (arrived >> src & 1u)) ? b.fibers[warp0 + src] : g;
    if (from.size != g.size) {
      fail_block(cudaErrorIllegalInstruction, "lanes of one warp intrinsic exchange different types");
      return;
    }
    copy_bytes(g.result, from.value, g.size);
  }
  for (int l = 0; l < lanes; ++l) {
    Fiber& g = b.fibers[warp0 + l];
    if (g.state == State::kWarp) {
      g.state = State::kReady;
      b.ready.push_back(warp0 + l);
    }
  }
}

void run_block(Rng& rng) {
  Block& b = g_block;
  b.ready.clear();
  b.live = static_cast<int>(b.fibers.size());
  b.at_barrier = 0;
  const dim3 bd = g_block_dim;
  for (size_t i = 0; i < b.fibers.size(); ++i) {
    Fiber& f = b.fibers[i];
    f.linear = static_cast<int>(i);
    f.idx = make_uint3(static_cast<unsigned>(i % bd.x), static_cast<unsigned>(i / bd.x % bd.y),
                       static_cast<unsigned>(i / (bd.x * bd.y)));
    f.state = State::kReady;
    f.started = false;
    f.shared_seen = 0;
    init_fiber(f, i);
    b.ready.push_back(static_cast<int>(i));
  }
#if defined(HARNESS_TSAN)
  __tsan_release(&g_tsan_block_start);
#endif
  while (!b.ready.empty() && b.error == cudaSuccess) {
    const size_t pick = rng.next() % b.ready.size();
    const int i = b.ready[pick];
    b.ready[pick] = b.ready.back();
    b.ready.pop_back();
    Fiber& f = b.fibers[i];
    switch_to(&f);
    f.started = true;
    settle(f);
  }
  if (b.error == cudaSuccess && b.live > 0)
    fail_block(cudaErrorLaunchFailure, "deadlock: threads wait at a barrier or warp intrinsic that "
                                       "the other threads never reach");
#if defined(HARNESS_TSAN)
  __tsan_acquire(&g_tsan_block_end);
#endif
  for (void* p : b.shared) std::free(p);
  b.shared.clear();
  b.shared_sizes.clear();
  b.shared_bytes = 0;
}

// Stops the running thread until the scheduler resumes it in state kReady.
void wait_as(State s) {
  g_current->state = s;
  switch_to(nullptr);
}

uint64_t seed_from_env() {
  const char* s = std::getenv("CUDA_HARNESS_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 0;
}

std::string launch_refusal(const LaunchConfig& c) {
  const dim3 g = c.grid, b = c.block;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0) return "a zero grid or block dimension";
  if (b.x > kMaxThreadsPerBlock || b.y > kMaxThreadsPerBlock || b.z > kMaxBlockZ ||
      static_cast<uint64_t>(b.x) * b.y * b.z > kMaxThreadsPerBlock)
    return "more than 1024 threads per block (or block y > 1024, z > 64)";
  if (g.x > kMaxGridX || g.y > kMaxGridYZ || g.z > kMaxGridYZ) return "grid y or z above 65535";
  if (c.dynamic_shared > kMaxSharedPerBlock) return "dynamic shared memory above 48 KiB";
  return "";
}

}  // namespace

void run_kernel(const LaunchConfig& cfg, void (*body)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  const std::string refusal = launch_refusal(cfg);
  if (!refusal.empty()) {
    if (std::getenv("CUDA_HARNESS_VERBOSE")) std::fprintf(stderr, "cuda_harness: launch refused: %s\n", refusal.c_str());
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const uint64_t seed = seed_from_env();
  const uint64_t launch = ++g_launches;
  g_body = body;
  g_body_ctx = ctx;
  g_grid_dim = cfg.grid;
  g_block_dim = cfg.block;
  Block& b = g_block;
  b.fibers.assign(static_cast<size_t>(cfg.block.x) * cfg.block.y * cfg.block.z, Fiber{});
  b.error = cudaSuccess;
  b.why.clear();
#if defined(HARNESS_TSAN)
  g_scheduler_tsan = __tsan_get_current_fiber();
#endif
  for (unsigned z = 0; z < cfg.grid.z && b.error == cudaSuccess; ++z)
    for (unsigned y = 0; y < cfg.grid.y && b.error == cudaSuccess; ++y)
      for (unsigned x = 0; x < cfg.grid.x && b.error == cudaSuccess; ++x) {
        g_block_idx = make_uint3(x, y, z);
        Rng rng{seed * 0x100000001b3ull ^ launch * 0x9e3779b97f4a7c15ull ^
                ((static_cast<uint64_t>(z) << 48) ^ (static_cast<uint64_t>(y) << 32) ^ x)};
        run_block(rng);
      }
  if (b.error != cudaSuccess) {
    std::fprintf(stderr, "cuda_harness: kernel failed in block (%u,%u,%u): %s\n", g_block_idx.x,
                 g_block_idx.y, g_block_idx.z, b.why.c_str());
    g_last_error = b.error;
  }
  g_current = nullptr;
}

void syncthreads() {
#if defined(HARNESS_TSAN)
  tsan_release(&g_tsan_sync_object);
#endif
  wait_as(State::kBarrier);
#if defined(HARNESS_TSAN)
  tsan_acquire(&g_tsan_sync_object);
#endif
}

int lane_id() { return g_current->linear % kWarp; }

void warp_exchange(unsigned mask, const void* value, size_t size, int src_lane, void* result) {
  Fiber& f = *g_current;
  if (size > sizeof f.value) {
    std::fprintf(stderr, "cuda_harness: warp exchange of %zu bytes\n", size);
    std::abort();
  }
  const int lane = f.linear % kWarp;
  if (!(mask >> lane & 1u)) {
    fail_block(cudaErrorIllegalInstruction, "a lane calls a warp intrinsic whose mask leaves it out");
  }
  f.mask = mask;
  copy_bytes(f.value, value, size);
  f.size = size;
  f.src = f.linear - lane + src_lane;
  const void* sync_object = &g_block.fibers[f.linear - lane];
#if defined(HARNESS_TSAN)
  tsan_release(sync_object);
#endif
  wait_as(State::kWarp);
#if defined(HARNESS_TSAN)
  tsan_acquire(sync_object);
#endif
  (void)sync_object;
  copy_bytes(result, f.result, size);
}

void* shared_storage(size_t size, size_t align) {
  Block& b = g_block;
  Fiber& f = *g_current;
  const size_t i = f.shared_seen++;
  if (i < b.shared.size()) {
    if (b.shared_sizes[i] != size) {
      std::fprintf(stderr, "cuda_harness: threads of a block declare different __shared__ arrays\n");
      std::abort();
    }
#if defined(HARNESS_TSAN)
    tsan_acquire(b.shared[i]);
#endif
    return b.shared[i];
  }
  b.shared_bytes += size;
  if (b.shared_bytes > kMaxSharedPerBlock) {
    // nvcc refuses static shared memory above 48 KiB; a launch with more fails. Here the total
    // is known once the declarations ran: the launch ends with an error, as it would not start.
    fail_block(cudaErrorInvalidValue, "static shared memory above 48 KiB per block");
    f.state = State::kDone;
    switch_to(nullptr, true);
  }
  (void)align;  // malloc's 16-byte alignment covers every type the kernels share
  void* p = std::malloc(size);
  std::memset(p, 0xff, size);
  b.shared.push_back(p);
  b.shared_sizes.push_back(size);
#if defined(HARNESS_TSAN)
  tsan_release(p);
#endif
  return p;
}

}  // namespace cuda_harness

// ----- CUDA runtime calls the launchers and the binding make -----

extern "C" {

cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t e = cuda_harness::g_last_error;
  cuda_harness::g_last_error = cudaSuccess;
  return e;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return cuda_harness::g_last_error; }

const char* CUDARTAPI cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalInstruction: return "cudaErrorIllegalInstruction";
    default: return "cudaError";
  }
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    default: return "unknown error";
  }
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

}  // extern "C"
