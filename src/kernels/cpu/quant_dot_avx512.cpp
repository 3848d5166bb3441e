// quant_linear's AVX-512 kernels: the AVX2 kernels with the byte and word dots done by VNNI's vpdpbusd and
// vpdpwssd (on 256-bit vectors, AVX512VL). CMakeLists.txt compiles this file alone with the AVX-512
// F/BW/VL/VNNI flags; they only run where the dispatcher (quant.cpp) found those features on the CPU.
#include "kernels/cpu/quant_kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)

#define ZQ_VNNI 1
#include "kernels/cpu/quant_dot_x86.inc"

namespace zebra::cpu::quant {
namespace {
const Kernels AVX512 = {
    "avx512-vnni",
    acts32,
    acts256,
    {tile<Q8_0>, tile<Q4_0>, tile<Q4_1>, tile<Q5_0>, tile<Q5_1>, tile<Q4_K>, tile<Q5_K>, tile<Q6_K>},
};
}  // namespace
const Kernels* avx512_kernels() { return &AVX512; }
}  // namespace zebra::cpu::quant

#else

namespace zebra::cpu::quant {
const Kernels* avx512_kernels() { return nullptr; }
}  // namespace zebra::cpu::quant

#endif
