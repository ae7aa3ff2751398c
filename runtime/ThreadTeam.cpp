//===- ThreadTeam.cpp - run a kernel on an OpenMP team --------------------===//
//
// The CPU kernels' grids run on the threads of torch's own OpenMP runtime:
// attn-parallel-to-omp gives the kernel two trailing index arguments (thread
// number, team size) and splits its grid points by them; this calls the
// kernel from every thread of one GOMP_parallel region. The entry points
// come from the caller (found in the process by runtime/python/.../openmp.py),
// so nothing here links an OpenMP runtime of its own.
//
//===----------------------------------------------------------------------===//
#include "runtime/AttnRuntime.h"

#include <vector>

namespace {
struct TeamCall {
  void (*fn)(void **);
  void *const *args;
  size_t nargs;
  const AttnccOmp *omp;
};

void runOneThread(void *data) {
  auto *call = static_cast<TeamCall *>(data);
  // The team may be smaller than asked for (nested regions, thread limits):
  // split by what it is.
  int64_t tid = call->omp->threadNum(), nt = call->omp->numThreads();
  std::vector<void *> args(call->args, call->args + call->nargs);
  args.push_back(&tid);
  args.push_back(&nt);
  call->fn(args.data());
}
} // namespace

void attnccRunOnTeam(void (*fn)(void **), void *const *args, size_t nargs, unsigned numThreads,
                     const AttnccOmp *omp) {
  TeamCall call{fn, args, nargs, omp};
  omp->parallel(runOneThread, &call, numThreads, 0);
}
