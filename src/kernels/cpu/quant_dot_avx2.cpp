// quant_linear's AVX2 kernels. CMakeLists.txt compiles this file alone with -mavx2 -mfma -mf16c; they only
// run where the dispatcher (quant.cpp) found those features on the CPU.
#include "kernels/cpu/quant_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define ZQ_VNNI 0
#include "kernels/cpu/quant_dot_x86.inc"

namespace zebra::cpu::quant {
namespace {
const Kernels AVX2 = {
    "avx2",
    acts32,
    acts256,
    {tile<Q8_0>, tile<Q4_0>, tile<Q4_1>, tile<Q5_0>, tile<Q5_1>, tile<Q4_K>, tile<Q5_K>, tile<Q6_K>},
};
}  // namespace
const Kernels* avx2_kernels() { return &AVX2; }
}  // namespace zebra::cpu::quant

#else

namespace zebra::cpu::quant {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace zebra::cpu::quant

#endif
