#include "mxlens/gpu/cuda.h"
namespace mxlens::gpu {
int cuda_device_count() {
  return 0;
}
}  // namespace mxlens::gpu
