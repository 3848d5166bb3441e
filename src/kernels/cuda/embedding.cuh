// embedding gather: the residual stream's first rows, x[t] = embed[tokens[t]] in fp32.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

// x[t, :hidden] = embed[tokens[t], :hidden] for t < rows; embed is [vocab, hidden]. The engine checks the ids on
// the host; an id outside [0, vocab) still never reads out of bounds here (its row becomes NaN, so it shows).
template <class T>
void embedding_gather(const T* embed, int64_t vocab, int64_t hidden, const int32_t* tokens, int64_t rows, float* x,
                      int64_t ldx, cudaStream_t stream);

}  // namespace zebra::cuda
