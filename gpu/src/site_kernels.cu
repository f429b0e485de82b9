// Activation-side kernels of a W4A4 site (site_kernels.h) and the host entry points of
// mxlens/gpu/cuda.h that run the fused rotate + quantize kernel (tests, benchmarks).
//
// Fused kernel layout: a warp works on 32-element blocks, lane j holding element j, so a warp's
// load and store of a block are one coalesced 128-byte line; each step of a warp takes four
// consecutive blocks and issues their loads first. The rotation y_j = Σ_i x_i·R_ij keeps column j
// of R in lane j's registers (loaded once per thread) and broadcasts the block's 32 inputs
// through shared memory as eight float4 reads; 32 fused multiply-adds per element. The block
// maximum is a 5-step shuffle reduction. The target is compiled with --fmad=false, so the
// rotation's fmaf calls are the only contractions, and the quantization is the single-rounding
// arithmetic of mxfp4_block.cuh.
#include <algorithm>
#include <cstdint>
#include <string>

#include "core/util/error.h"
#include "cuda_util.h"
#include "mxfp4_block.cuh"
#include "mxlens/gpu/cuda.h"
#include "site_kernels.h"

namespace mxlens::gpu::detail {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kFusedThreads = 256;
constexpr int kFusedWarps = kFusedThreads / 32;
constexpr int kBlocksPerWarpStep = 4;
constexpr int kElementThreads = 256;
constexpr int kHadamardThreads = 512;

// Fake-quantized value of this lane's element; every lane of the warp must call (the block
// maximum is a warp reduction). Lanes outside the row hold 0, which changes no maximum.
__device__ __forceinline__ float fake_quantize_lane(float v, ScaleRule rule, Rounding rounding) {
  uint32_t amax = float_bits(v) & 0x7fffffffu;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    amax = max(amax, __shfl_xor_sync(kFullMask, amax, offset));
  const BlockScale s = block_scale(amax, rule);
  if (s.e8m0 == kE8m0Nan) return bits_float(kQuietNanBits);  // Inf/NaN in the block
  const uint32_t code = rule == ScaleRule::fpquant
                            ? encode_e2m1(v, s.scale, rounding)
                            : encode_e2m1_pow2(v, inverse_power_scale(s.e8m0), rounding);
  return e2m1_value(code) * s.scale;
}

template <SiteScale kScale, bool kRotate, bool kQuantize>
__global__ void __launch_bounds__(kFusedThreads)
    fused_site_kernel(float* x, int64_t rows, int cols, const float* __restrict__ scale,
                      const float* __restrict__ rotation, ScaleRule rule, Rounding rounding) {
  __shared__ __align__(16) float stage[kFusedWarps][kBlocksPerWarpStep][32];
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp = static_cast<int>(threadIdx.x / 32);
  float column[32];
  if constexpr (kRotate) {
#pragma unroll
    for (int i = 0; i < 32; ++i) column[i] = rotation[i * 32 + lane];
  }
  const int64_t blocks_per_row = (cols + 31) / 32;
  const int64_t n_blocks = rows * blocks_per_row;
  // Rows of whole blocks are one contiguous run of blocks: no division per block.
  const bool dense = cols % 32 == 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kFusedWarps * kBlocksPerWarpStep;
  // Each step of a warp takes kBlocksPerWarpStep consecutive blocks, their loads issued before
  // any is used (memory-level parallelism). The loop variable is the same for all lanes of a
  // warp, so every shuffle sees 32 lanes; blocks past the end are computed on zeros and not
  // stored.
  for (int64_t first = (static_cast<int64_t>(blockIdx.x) * kFusedWarps + warp) * kBlocksPerWarpStep;
       first < n_blocks; first += stride) {
    float v[kBlocksPerWarpStep];
    int64_t offset[kBlocksPerWarpStep];
    int col[kBlocksPerWarpStep];
    bool valid[kBlocksPerWarpStep];
#pragma unroll
    for (int u = 0; u < kBlocksPerWarpStep; ++u) {
      const int64_t block = first + u;
      if (dense) {
        offset[u] = block * 32 + lane;
        col[u] = 0;  // only smoothing needs the channel (a division, so only then)
        if constexpr (kScale != SiteScale::none) col[u] = static_cast<int>(offset[u] % cols);
        valid[u] = block < n_blocks;
      } else {
        const int64_t row = block / blocks_per_row;
        col[u] = static_cast<int>((block - row * blocks_per_row) * 32 + lane);
        offset[u] = row * cols + col[u];
        valid[u] = block < n_blocks && col[u] < cols;
      }
      v[u] = valid[u] ? x[offset[u]] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kBlocksPerWarpStep; ++u) {
      if constexpr (kScale == SiteScale::divide) {
        if (valid[u]) v[u] = v[u] / scale[col[u]];
      }
      if constexpr (kRotate) stage[warp][u][lane] = v[u];
    }
    if constexpr (kRotate) {
      __syncwarp();
#pragma unroll
      for (int u = 0; u < kBlocksPerWarpStep; ++u) {
        const float4* in = reinterpret_cast<const float4*>(stage[warp][u]);
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float4 q = in[i];
          acc = fmaf(q.x, column[4 * i], acc);
          acc = fmaf(q.y, column[4 * i + 1], acc);
          acc = fmaf(q.z, column[4 * i + 2], acc);
          acc = fmaf(q.w, column[4 * i + 3], acc);
        }
        v[u] = acc;
      }
      __syncwarp();  // the stage is rewritten by the next step
    }
#pragma unroll
    for (int u = 0; u < kBlocksPerWarpStep; ++u) {
      if constexpr (kQuantize) v[u] = fake_quantize_lane(v[u], rule, rounding);
      if (valid[u]) x[offset[u]] = v[u];
    }
  }
}

// One wave: as many CTAs as can be resident at once (each loops over its share of blocks and
// loads R once per thread), fewer when there is less work.
template <SiteScale kScale, bool kRotate, bool kQuantize>
void launch_fused(const FusedSiteArgs& a, int64_t ctas_for_work, int multiprocessors,
                  cudaStream_t stream) {
  static const int resident = [] {
    int blocks = 0;
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                   &blocks, fused_site_kernel<kScale, kRotate, kQuantize>, kFusedThreads, 0),
               "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    return std::max(blocks, 1);
  }();
  const int64_t cap = int64_t(std::max(multiprocessors, 1)) * resident;
  const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>(ctas_for_work, 1, cap));
  fused_site_kernel<kScale, kRotate, kQuantize><<<grid, kFusedThreads, 0, stream>>>(
      a.x, a.rows, a.cols, a.scale, a.rotation, a.rule, a.rounding);
}

template <SiteScale kScale>
void launch_fused_scaled(const FusedSiteArgs& a, int64_t ctas, int sms, cudaStream_t stream) {
  const bool rotate = a.rotation != nullptr;
  if (rotate && a.quantize) return launch_fused<kScale, true, true>(a, ctas, sms, stream);
  if (rotate) return launch_fused<kScale, true, false>(a, ctas, sms, stream);
  if (a.quantize) return launch_fused<kScale, false, true>(a, ctas, sms, stream);
  return launch_fused<kScale, false, false>(a, ctas, sms, stream);
}

__global__ void block_rotation_kernel(const float* __restrict__ x, float* __restrict__ y,
                                      int64_t rows, int cols, const float* __restrict__ rotation,
                                      int b) {
  const int64_t n = rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / cols;
    const int col = static_cast<int>(idx - row * cols);
    const int j = col % b;
    const float* in = x + row * cols + (col - j);
    float acc = 0.0f;
    for (int i = 0; i < b; ++i) acc = fmaf(in[i], rotation[i * b + j], acc);
    y[idx] = acc;
  }
}

__global__ void permute_columns_kernel(const float* __restrict__ x, float* __restrict__ y,
                                       int64_t rows, int cols,
                                       const int32_t* __restrict__ permutation) {
  const int64_t n = rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / cols;
    const int col = static_cast<int>(idx - row * cols);
    y[idx] = x[row * cols + permutation[col]];
  }
}

// One CTA per row. The butterflies are those of core's fwht (h = 1, 2, 4, ... within each
// segment of k), so that part is bit-identical; the m×m mix sums in index order.
__global__ void __launch_bounds__(kHadamardThreads)
    full_hadamard_kernel(float* x, int n, int m, int k, const float* __restrict__ mix,
                         const float* __restrict__ signs, float norm) {
  extern __shared__ float row[];
  float* g = x + static_cast<int64_t>(blockIdx.x) * n;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += blockDim.x) row[i] = g[i];
  __syncthreads();
  const int half_k = k / 2;
  const int pairs = m * half_k;
  for (int h = 1; h < k; h <<= 1) {
    for (int p = static_cast<int>(threadIdx.x); p < pairs; p += blockDim.x) {
      const int segment = p / half_k;
      const int q = p - segment * half_k;
      const int j = segment * k + (q / h) * 2 * h + (q % h);
      const float a = row[j], b = row[j + h];
      row[j] = a + b;
      row[j + h] = a - b;
    }
    __syncthreads();
  }
  if (m > 1) {
    // Column c of the m×k view depends only on column c: each thread mixes whole columns.
    for (int c = static_cast<int>(threadIdx.x); c < k; c += blockDim.x) {
      float in[kMaxHadamardMix];
      for (int a = 0; a < m; ++a) in[a] = row[a * k + c];
      for (int a = 0; a < m; ++a) {
        float acc = 0.0f;
        for (int b = 0; b < m; ++b) acc += mix[a * m + b] * in[b];
        row[a * k + c] = acc;
      }
    }
    __syncthreads();
  }
  for (int i = static_cast<int>(threadIdx.x); i < n; i += blockDim.x)
    g[i] = row[i] * (signs ? norm * signs[i] : norm);
}

unsigned element_grid(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65535));
}

int current_device_attribute(cudaDeviceAttr attribute, const char* what) {
  int device = 0, value = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&value, attribute, device), what);
  return value;
}

}  // namespace

void launch_fused_site(const FusedSiteArgs& a, int multiprocessors, cudaStream_t stream) {
  if (a.rows <= 0 || a.cols <= 0) return;
  if (a.rotation && a.cols % 32 != 0)
    throw Error("cuda", "32×32 block rotation of " + std::to_string(a.cols) +
                            " channels (not a multiple of 32)");
  if (a.quantize && a.rule == ScaleRule::dqv2_log8)
    throw Error("cuda", "scale rule dqv2_log8 is not supported by the CUDA backend");
  if (a.scale_mode != SiteScale::none && !a.scale) throw Error("cuda", "smoothing without factors");
  const int64_t n_blocks = a.rows * ((a.cols + 31) / 32);
  const int64_t per_cta = int64_t(kFusedWarps) * kBlocksPerWarpStep;
  const int64_t ctas = (n_blocks + per_cta - 1) / per_cta;
  switch (a.scale_mode) {
    case SiteScale::none:
      launch_fused_scaled<SiteScale::none>(a, ctas, multiprocessors, stream);
      break;
    case SiteScale::divide:
      launch_fused_scaled<SiteScale::divide>(a, ctas, multiprocessors, stream);
      break;
  }
  check_launch("fused_site_kernel");
}

void launch_block_rotation(const float* x, float* y, int64_t rows, int cols, const float* rotation,
                           int b, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (b <= 0 || cols % b != 0)
    throw Error("cuda", "block rotation of size " + std::to_string(b) + " does not divide " +
                            std::to_string(cols) + " channels");
  block_rotation_kernel<<<element_grid(rows * cols, kElementThreads), kElementThreads, 0, stream>>>(
      x, y, rows, cols, rotation, b);
  check_launch("block_rotation_kernel");
}

void launch_permute_columns(const float* x, float* y, int64_t rows, int cols,
                            const int32_t* permutation, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  permute_columns_kernel<<<element_grid(rows * cols, kElementThreads), kElementThreads, 0,
                           stream>>>(x, y, rows, cols, permutation);
  check_launch("permute_columns_kernel");
}

size_t full_hadamard_max_channels() {
  const int optin = current_device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                             "cudaDeviceGetAttribute (shared memory opt-in)");
  return static_cast<size_t>(optin) / sizeof(float);
}

void launch_full_hadamard(float* x, int64_t rows, int n, int m, int k, const float* mix,
                          const float* signs, float norm, cudaStream_t stream) {
  if (rows <= 0) return;
  if (m < 1 || m > kMaxHadamardMix || k < 1 || (k & (k - 1)) != 0 || int64_t(m) * k != n)
    throw Error("cuda", "full Hadamard of " + std::to_string(n) + " channels as " +
                            std::to_string(m) + " × " + std::to_string(k) + " is not supported");
  if (m > 1 && !mix) throw Error("cuda", "full Hadamard without its segment mix");
  if (rows > 0x7fffffff) throw Error("cuda", "full Hadamard over too many rows");
  const size_t shared = static_cast<size_t>(n) * sizeof(float);
  if (shared > full_hadamard_max_channels() * sizeof(float))
    throw Error("cuda", "full Hadamard of " + std::to_string(n) +
                            " channels needs more shared memory per block than this device has");
  check_cuda(cudaFuncSetAttribute(full_hadamard_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(shared)),
             "cudaFuncSetAttribute (full Hadamard shared memory)");
  full_hadamard_kernel<<<static_cast<unsigned>(rows), kHadamardThreads, shared, stream>>>(
      x, n, m, k, mix, signs, norm);
  check_launch("full_hadamard_kernel");
}

DeviceSite::DeviceSite(const SiteDesc& desc, const std::string& where, cudaStream_t stream)
    : identity_(desc.identity()),
      channels_(desc.channels),
      scale_mode_(desc.scale_mode),
      quantize_(desc.quantize),
      quant_(desc.quant) {
  if (channels_ <= 0) throw Error(where, "site has no channels");
  if (quantize_ && quant_.scale_rule == ScaleRule::dqv2_log8)
    throw Error(where,
                "activation scale rule dqv2_log8 is not supported by the CUDA backend (it needs "
                "the whole tensor's scale range); use --backend cpu");
  if (scale_mode_ != SiteScale::none) {
    if (int64_t(desc.scale.size()) != channels_)
      throw Error(where, "smoothing has " + std::to_string(desc.scale.size()) + " factors for " +
                             std::to_string(channels_) + " channels");
    scale_.allocate(desc.scale.size(), "smoothing factors");
    upload(scale_.get(), desc.scale.data(), desc.scale.size(), stream, "smoothing factors");
  }
  for (const SiteStep& s : desc.steps) {
    Step step;
    step.kind = s.kind;
    step.size = s.size;
    switch (s.kind) {
      case SiteStep::Kind::block_rotation:
        if (s.size <= 0 || channels_ % s.size != 0 ||
            int64_t(s.matrix.size()) != int64_t(s.size) * s.size)
          throw Error(where, "block rotation of size " + std::to_string(s.size) + " does not fit " +
                                 std::to_string(channels_) + " channels");
        step.matrix.allocate(s.matrix.size(), "block rotation");
        upload(step.matrix.get(), s.matrix.data(), s.matrix.size(), stream, "block rotation");
        break;
      case SiteStep::Kind::permutation:
        if (s.size != channels_ || int64_t(s.indices.size()) != channels_)
          throw Error(where, "permutation of " + std::to_string(s.indices.size()) +
                                 " channels at a site of " + std::to_string(channels_));
        for (int32_t i : s.indices)
          if (i < 0 || i >= channels_) throw Error(where, "permutation index out of range");
        step.indices.allocate(s.indices.size(), "permutation");
        upload(step.indices.get(), s.indices.data(), s.indices.size(), stream, "permutation");
        break;
      case SiteStep::Kind::full_hadamard:
        if (s.size != channels_ || int64_t(s.hadamard_m) * s.hadamard_k != channels_ ||
            s.hadamard_m > kMaxHadamardMix ||
            (s.hadamard_m > 1 &&
             int64_t(s.matrix.size()) != int64_t(s.hadamard_m) * s.hadamard_m) ||
            (!s.signs.empty() && int64_t(s.signs.size()) != channels_))
          throw Error(where, "full Hadamard of " + std::to_string(s.size) + " channels (" +
                                 std::to_string(s.hadamard_m) + " × " +
                                 std::to_string(s.hadamard_k) + ") does not fit the site");
        if (size_t(channels_) > full_hadamard_max_channels())
          throw Error(where, "full Hadamard of " + std::to_string(channels_) +
                                 " channels does not fit this device's shared memory per block; "
                                 "use --backend cpu");
        step.m = s.hadamard_m;
        step.k = s.hadamard_k;
        step.norm = s.hadamard_norm;
        if (step.m > 1) {
          step.matrix.allocate(s.matrix.size(), "Hadamard mix");
          upload(step.matrix.get(), s.matrix.data(), s.matrix.size(), stream, "Hadamard mix");
        }
        if (!s.signs.empty()) {
          step.signs.allocate(s.signs.size(), "Hadamard signs");
          upload(step.signs.get(), s.signs.data(), s.signs.size(), stream, "Hadamard signs");
        }
        break;
    }
    steps_.push_back(std::move(step));
  }
  fuse_last_rotation_ = !steps_.empty() && steps_.back().kind == SiteStep::Kind::block_rotation &&
                        steps_.back().size == 32;
}

void DeviceSite::apply(float* x, int64_t rows, float* scratch, int multiprocessors,
                       cudaStream_t stream) const {
  if (identity_ || rows <= 0) return;
  const int cols = channels_;
  const size_t bytes = static_cast<size_t>(rows) * cols * sizeof(float);
  FusedSiteArgs fused;
  fused.x = x;
  fused.rows = rows;
  fused.cols = cols;
  bool scale_pending = scale_mode_ != SiteScale::none;
  auto take_scale = [&](FusedSiteArgs& a) {
    if (!scale_pending) return;
    a.scale_mode = scale_mode_;
    a.scale = scale_.get();
    scale_pending = false;
  };
  const size_t unfused = steps_.size() - (fuse_last_rotation_ ? 1 : 0);
  for (size_t i = 0; i < unfused; ++i) {
    const Step& s = steps_[i];
    if (s.kind == SiteStep::Kind::block_rotation && s.size == 32) {
      FusedSiteArgs a = fused;  // smoothing and rotation in one pass, no quantization
      take_scale(a);
      a.rotation = s.matrix.get();
      launch_fused_site(a, multiprocessors, stream);
      continue;
    }
    if (scale_pending) {
      FusedSiteArgs a = fused;
      take_scale(a);
      launch_fused_site(a, multiprocessors, stream);
    }
    switch (s.kind) {
      case SiteStep::Kind::block_rotation:
        launch_block_rotation(x, scratch, rows, cols, s.matrix.get(), s.size, stream);
        check_cuda(cudaMemcpyAsync(x, scratch, bytes, cudaMemcpyDeviceToDevice, stream),
                   "block rotation copy");
        break;
      case SiteStep::Kind::permutation:
        launch_permute_columns(x, scratch, rows, cols, s.indices.get(), stream);
        check_cuda(cudaMemcpyAsync(x, scratch, bytes, cudaMemcpyDeviceToDevice, stream),
                   "permutation copy");
        break;
      case SiteStep::Kind::full_hadamard:
        launch_full_hadamard(x, rows, cols, s.m, s.k, s.matrix.get(), s.signs.get(), s.norm,
                             stream);
        break;
    }
  }
  if (fuse_last_rotation_ || quantize_ || scale_pending) {
    FusedSiteArgs a = fused;
    take_scale(a);
    if (fuse_last_rotation_) a.rotation = steps_.back().matrix.get();
    a.quantize = quantize_;
    a.rule = quant_.scale_rule;
    a.rounding = quant_.rounding;
    launch_fused_site(a, multiprocessors, stream);
  }
}

}  // namespace mxlens::gpu::detail

// --- public entry points (mxlens/gpu/cuda.h) ----------------------------------------------

namespace mxlens::gpu {
namespace {

constexpr const char* kRotateSource = "cuda rotate_quantize";

void check_rotate_args(int64_t rows, int64_t cols, bool rotate, const QuantOptions* quant) {
  if (rows < 0 || cols <= 0 || cols > 0x7fffffff)
    throw Error(kRotateSource, "bad shape " + std::to_string(rows) + " x " + std::to_string(cols));
  if (rotate && cols % 32 != 0)
    throw Error(kRotateSource, "cols = " + std::to_string(cols) +
                                   " is not a multiple of the 32×32 rotation block");
  if (quant && quant->scale_rule == ScaleRule::dqv2_log8)
    throw Error(kRotateSource,
                "scale rule dqv2_log8 is not supported by the CUDA backend (it needs the whole "
                "tensor's scale range); use the CPU path");
}

int multiprocessors_of_current() {
  int device = 0, sms = 0;
  detail::check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  detail::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                     "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace

namespace device {

void rotate_quantize_rows(float* x, int64_t rows, int64_t cols, const float* rotation32,
                          const QuantOptions* quant, void* stream) {
  check_rotate_args(rows, cols, rotation32 != nullptr, quant);
  detail::FusedSiteArgs a;
  a.x = x;
  a.rows = rows;
  a.cols = static_cast<int>(cols);
  a.rotation = rotation32;
  a.quantize = quant != nullptr;
  if (quant) {
    a.rule = quant->scale_rule;
    a.rounding = quant->rounding;
  }
  detail::launch_fused_site(a, multiprocessors_of_current(), static_cast<cudaStream_t>(stream));
}

}  // namespace device

void cuda_rotate_quantize_rows(std::span<const float> x, int64_t rows, int64_t cols,
                               std::span<const float> rotation32, const QuantOptions* quant,
                               std::span<float> out, int device_index) {
  check_rotate_args(rows, cols, !rotation32.empty(), quant);
  if (static_cast<int64_t>(x.size()) != rows * cols || out.size() != x.size())
    throw Error(kRotateSource,
                "x and out must hold rows * cols = " + std::to_string(rows * cols) + " floats");
  if (!rotation32.empty() && rotation32.size() != 32 * 32)
    throw Error(kRotateSource, "the rotation must be 32 x 32 (1024 floats, row-major)");
  const int count = cuda_device_count();
  if (count == 0) throw Error("cuda", cuda_unavailable_reason());
  if (device_index < 0 || device_index >= count)
    throw Error("cuda", "device " + std::to_string(device_index) + " does not exist (" +
                            std::to_string(count) + " present)");
  detail::check_cuda(cudaSetDevice(device_index), "cudaSetDevice");
  detail::DeviceArray<float> d_x(x.size(), "activations");
  detail::DeviceArray<float> d_r(rotation32.size(), "rotation");
  detail::upload(d_x.get(), x.data(), x.size(), nullptr, "activations");
  detail::upload(d_r.get(), rotation32.data(), rotation32.size(), nullptr, "rotation");
  device::rotate_quantize_rows(d_x.get(), rows, cols, d_r.get(), quant, nullptr);
  detail::check_cuda(cudaDeviceSynchronize(), "rotate_quantize kernel");
  if (!x.empty())
    detail::check_cuda(cudaMemcpy(out.data(), d_x.get(), x.size_bytes(), cudaMemcpyDeviceToHost),
                       "copy of the result to the host");
}

}  // namespace mxlens::gpu
