// make_engine's dispatch on EngineOptions::device, and the --device flag's parsing. Kept tiny on purpose: each
// backend lives in its own file (cpu_engine.*, cuda_engine.*).
#include <memory>
#include <string>

#include "engine/engine.h"
#if defined(ZEBRA_HAVE_CUDA)
#include "engine/cuda_engine.h"
#endif
#if __has_include("engine/cpu_engine.h")
#include "engine/cpu_engine.h"
#define ZEBRA_HAVE_CPU_ENGINE 1
#endif

namespace zebra {

const char* device_name(Device d) {
  switch (d) {
    case Device::Cpu: return "cpu";
    case Device::Cuda: return "cuda";
  }
  return "?";
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::Cpu;
  if (text == "cuda") return Device::Cuda;
  if (text == "auto") {
#if defined(ZEBRA_HAVE_CUDA)
    return cuda_device_count() > 0 ? Device::Cuda : Device::Cpu;
#else
    return Device::Cpu;
#endif
  }
  fail("--device: expected cpu, cuda or auto, got '", text, "'");
}

std::unique_ptr<Engine> make_engine(const Model& model, const EngineOptions& opts) {
  switch (opts.device) {
    case Device::Cuda:
#if defined(ZEBRA_HAVE_CUDA)
      return make_cuda_engine(model, opts);
#else
      fail("--device cuda: zebra was built without CUDA (configure with -DZEBRA_CUDA=ON where nvcc is installed); "
           "use --device cpu");
#endif
    case Device::Cpu:
#if defined(ZEBRA_HAVE_CPU_ENGINE)
      return make_cpu_engine(model, opts);
#else
      fail("--device cpu: the CPU engine is not part of this build yet");
#endif
  }
  fail("make_engine: unknown device");
}

}  // namespace zebra
