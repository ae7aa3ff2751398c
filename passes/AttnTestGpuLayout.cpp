//===- AttnTestGpuLayout.cpp - attn-test-gpu-layout -----------------------===//
//
// Test only: evaluates the layout functions of GpuLayout.h (the very ones
// attn-lower-to-gpu emits as IR) on integers and prints them as JSON, for
// test/python/test_gpu_layout.py to check against the PTX ISA tables.
//
//===----------------------------------------------------------------------===//
#include "passes/GpuLayout.h"
#include "passes/Passes.h"

#include "llvm/Support/raw_ostream.h"

namespace mlir::attn {
#define GEN_PASS_DEF_ATTNTESTGPULAYOUT
#include "passes/Passes.h.inc"
} // namespace mlir::attn

using namespace mlir;
namespace gl = mlir::attn::gpu_layout;

namespace {
template <typename F>
void printLanes(llvm::raw_ostream &os, StringRef name, F f) {
  os << "\"" << name << "\": [";
  for (int64_t lane = 0; lane < 32; ++lane) {
    auto [r, c] = f(lane);
    os << (lane ? ", " : "") << "[" << r << ", " << c << "]";
  }
  os << "]";
}

struct AttnTestGpuLayoutPass
    : mlir::attn::impl::AttnTestGpuLayoutBase<AttnTestGpuLayoutPass> {
  void runOnOperation() override {
    gl::IntOps o;
    llvm::raw_ostream &os = llvm::outs();
    os << "{";
    printLanes(os, "ldmatrix_row_major_x4", [&](int64_t l) { return gl::ldmatrixRowMajorX4(o, l); });
    os << ", ";
    printLanes(os, "ldmatrix_n_major_x4", [&](int64_t l) { return gl::ldmatrixNMajorX4(o, l); });
    os << ", \"accumulator\": [";
    for (int64_t lane = 0; lane < 32; ++lane) {
      os << (lane ? ", " : "") << "[";
      for (int64_t i = 0; i < 4; ++i) {
        auto [r, c] = gl::accumulatorElement(o, lane, i);
        os << (i ? ", " : "") << "[" << r << ", " << c << "]";
      }
      os << "]";
    }
    os << "], \"accumulator_offset\": [";
    for (int64_t i = 0; i < 4; ++i) {
      auto [r, c] = gl::accumulatorOffset(i);
      os << (i ? ", " : "") << "[" << r << ", " << c << "]";
    }
    os << "], \"probability_fragment_source\": [";
    for (int64_t r = 0; r < 4; ++r) {
      auto [nb, row] = gl::probabilityFragmentSource(r);
      os << (r ? ", " : "") << "[" << nb << ", " << row << "]";
    }
    os << "], \"tf32_a\": [";
    for (int64_t lane = 0; lane < 32; ++lane) {
      os << (lane ? ", " : "") << "[";
      for (int64_t i = 0; i < 4; ++i) {
        auto [r, c] = gl::tf32AElement(o, lane, i);
        os << (i ? ", " : "") << "[" << r << ", " << c << "]";
      }
      os << "]";
    }
    os << "], \"tf32_b\": [";
    for (int64_t lane = 0; lane < 32; ++lane) {
      os << (lane ? ", " : "") << "[";
      for (int64_t i = 0; i < 2; ++i) {
        auto [k, n] = gl::tf32BElement(o, lane, i);
        os << (i ? ", " : "") << "[" << k << ", " << n << "]";
      }
      os << "]";
    }
    os << "], \"tf32_key_of_column\": [";
    for (int64_t k = 0; k < 8; ++k)
      os << (k ? ", " : "") << gl::tf32KeyOfColumn(o, k);
    os << "], \"tf32_probability_source\": [";
    for (int64_t i = 0; i < 4; ++i)
      os << (i ? ", " : "") << gl::tf32ProbabilitySource(i);
    os << "], \"swizzle\": [";
    for (int64_t row = 0; row < 16; ++row) {
      os << (row ? ", " : "") << "[";
      for (int64_t ch = 0; ch < 16; ++ch)
        os << (ch ? ", " : "") << gl::swizzleChunk(o, row, ch);
      os << "]";
    }
    os << "], \"panel_swizzle\": {";
    bool firstPanel = true;
    for (int64_t rows : {16, 64, 128})
      for (int64_t cols : {64, 128}) {
        os << (firstPanel ? "" : ", ") << "\"" << rows << "x" << cols << "\": [";
        firstPanel = false;
        for (int64_t row = 0; row < rows; ++row)
          for (int64_t ch = 0; ch < cols / 8; ++ch) {
            auto [pr, pc] = gl::panelSwizzle(o, row, ch, rows);
            os << (row || ch ? ", " : "") << "[" << row << ", " << ch << ", " << pr << ", " << pc
               << "]";
          }
        os << "]";
      }
    os << "}, \"copy_chunks\": {";
    bool first = true;
    for (int64_t threads : {128, 256})
      for (int64_t rows : {16, 64, 128})
        for (int64_t cpr : {8, 16}) {
          int64_t chunks = rows * cpr, per = (chunks + threads - 1) / threads;
          os << (first ? "" : ", ") << "\"" << threads << "x" << rows << "x" << cpr << "\": [";
          first = false;
          bool firstChunk = true;
          for (int64_t j = 0; j < per; ++j)
            for (int64_t tid = 0; tid < threads; ++tid) {
              if (tid + j * threads >= chunks)
                continue; // the kernel guards these threads off
              auto [r, c] = gl::copyChunk(o, tid, j, threads, cpr);
              os << (firstChunk ? "" : ", ") << "[" << tid << ", " << j << ", " << r << ", " << c
                 << "]";
              firstChunk = false;
            }
          os << "]";
        }
    os << "}}\n";
    markAllAnalysesPreserved();
  }
};
} // namespace
