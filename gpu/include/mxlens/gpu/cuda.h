#pragma once
// The only public gpu header: plain C++, no CUDA types.
namespace mxlens::gpu {
int cuda_device_count();
}
