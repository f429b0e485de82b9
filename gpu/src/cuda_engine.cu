// The LLaMA forward on a CUDA device (cuda_engine.h): element-wise kernels, cuBLAS GEMMs, and
// the window driver. Kernels are plain grid-stride loops or one CTA per row; the heavy lifting
// is in cuBLAS (linears, lm_head, the two attention products per head) and in the fused site
// kernel (site_kernels.cu).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "cuda_engine.h"
#include "cuda_util.h"
#include "site_kernels.h"

namespace mxlens::gpu::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kNormThreads = 256;
constexpr int kSoftmaxWarps = 8;
// Attention scores of one query chunk, [heads, rows, keys] FP32, stay under this many bytes.
constexpr size_t kScoresBudgetBytes = size_t(256) << 20;
// Free device memory left for activations, cuBLAS workspace and the context beyond the weights.
constexpr size_t kHeadroomBytes = size_t(512) << 20;
constexpr int kLinears = 7;
constexpr int kSites = 4;
constexpr int kLayerVectors = 6;

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error("cuda", std::string(what) + ": cuBLAS " + cublasGetStatusName(status) + " (" +
                            cublasGetStatusString(status) + ")");
}

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error("cuda", std::string(what) + " = " + std::to_string(v) +
                            " exceeds what a cuBLAS call takes");
  return static_cast<int>(v);
}

unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65535));
}

#define MXLENS_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void gather_rows_kernel(const int32_t* __restrict__ ids, int64_t T,
                                   const float* __restrict__ table, int d, float* __restrict__ x) {
  MXLENS_GRID_STRIDE(i, T * d) {
    const int64_t t = i / d;
    x[i] = table[static_cast<int64_t>(ids[t]) * d + (i - t * d)];
  }
}

// Sum over the CTA (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = static_cast<int>(blockDim.x / 32);
    float s = lane < warps ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// y = x · rsqrt(mean(x²) + eps) · w per row, one CTA per row (forward.cpp's rmsnorm).
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(const float* __restrict__ x, int d, const float* __restrict__ w, float eps,
                   float* __restrict__ y) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * d;
  float sum = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < d; i += blockDim.x) sum += xr[i] * xr[i];
  const float ms = block_sum(sum) / static_cast<float>(d);
  const float inv = 1.0f / sqrtf(ms + eps);
  for (int i = static_cast<int>(threadIdx.x); i < d; i += blockDim.x) yr[i] = (xr[i] * inv) * w[i];
}

__global__ void add_bias_kernel(float* __restrict__ y, int64_t rows, int n,
                                const float* __restrict__ bias) {
  MXLENS_GRID_STRIDE(i, rows * n) {
    y[i] += bias[i % n];
  }
}

// Rotate-half RoPE in place: element i of a head pairs with i + D/2 (formats.md §2.3).
__global__ void rope_kernel(float* __restrict__ x, int64_t T, int heads, int D,
                            const float* __restrict__ cos_table,
                            const float* __restrict__ sin_table) {
  const int half = D / 2;
  MXLENS_GRID_STRIDE(idx, T * heads * half) {
    const int i = static_cast<int>(idx % half);
    const int64_t rest = idx / half;
    const int h = static_cast<int>(rest % heads);
    const int64_t t = rest / heads;
    float* p = x + t * heads * D + static_cast<int64_t>(h) * D;
    const float c = cos_table[t * half + i], s = sin_table[t * half + i];
    const float x1 = p[i], x2 = p[i + half];
    p[i] = x1 * c - x2 * s;
    p[i + half] = x2 * c + x1 * s;
  }
}

// Scores [heads·rows, keys]: row (h, i) is query r0 + i, which sees keys 0..r0+i. Scaled,
// softmax in FP32 with the max subtracted, the masked tail zeroed. One warp per row.
__global__ void __launch_bounds__(kSoftmaxWarps * 32)
    causal_softmax_kernel(float* __restrict__ scores, int64_t head_rows, int rows, int keys,
                          int64_t r0, float scale) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kSoftmaxWarps + threadIdx.x / 32;
  if (w >= head_rows) return;  // the whole warp leaves together
  float* s = scores + w * keys;
  const int n = static_cast<int>(r0 + (w % rows) + 1);
  float mx = -INFINITY;
  for (int j = lane; j < n; j += 32) {
    const float v = s[j] * scale;
    s[j] = v;
    mx = fmaxf(mx, v);
  }
  for (int offset = 16; offset > 0; offset >>= 1)
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, offset));
  float sum = 0.0f;
  for (int j = lane; j < n; j += 32) {
    const float e = expf(s[j] - mx);
    s[j] = e;
    sum += e;
  }
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  for (int j = lane; j < n; j += 32) s[j] = s[j] / sum;
  for (int j = n + lane; j < keys; j += 32) s[j] = 0.0f;
}

// gate ← silu(gate) ⊙ up, as forward.cpp: g / (1 + exp(-g)) · up.
__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
  MXLENS_GRID_STRIDE(i, n) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                               int64_t n) {
  MXLENS_GRID_STRIDE(i, n) {
    y[i] = __float2bfloat16_rn(x[i]);
  }
}

void convert_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  check_launch("to_bf16_kernel");
}

struct LinearWeights {
  DeviceArray<float> f32;
  DeviceArray<__nv_bfloat16> bf16;
  int64_t rows = 0, cols = 0;
};

struct LayerState {
  std::array<DeviceArray<float>, kLayerVectors> vectors;
  std::array<LinearWeights, kLinears> linears;
  std::array<DeviceSite, kSites> sites;
};

const char* linear_label(int linear) {
  static const char* kNames[kLinears] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                         "gate_proj", "up_proj", "down_proj"};
  return linear >= 0 && linear < kLinears ? kNames[linear] : "?";
}
const char* site_label(int site) {
  static const char* kNames[kSites] = {"qkv", "o", "gu", "down"};
  return site >= 0 && site < kSites ? kNames[site] : "?";
}

}  // namespace

struct CudaEngine::Impl {
  EngineConfig cfg;
  int device = 0;
  EngineGemm gemm = EngineGemm::fp32;
  int chunk_rows = 256;
  int multiprocessors = 1;
  std::string device_line;
  uint64_t weight_bytes = 0;
  bool finished = false;

  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  std::array<cudaEvent_t, 2> chunk_ready{};
  std::array<float*, 2> host_logits{};

  DeviceArray<float> embedding, lm_head, final_norm;
  DeviceArray<__nv_bfloat16> lm_head16;
  int64_t embedding_rows_done = 0, lm_head_rows_done = 0;
  std::vector<LayerState> layers;
  DeviceArray<float> staging;  // FP32 rows on their way to BF16

  // Window buffers, sized for `capacity` positions.
  int64_t capacity = 0;
  int64_t attention_rows = 0;  // query rows per attention chunk
  DeviceArray<int32_t> ids;
  DeviceArray<float> x, n, q, k, v, att, gate, up, scratch, scores, logits;
  DeviceArray<__nv_bfloat16> act16;
  DeviceArray<float> rope_cos, rope_sin;
  int64_t rope_positions = 0;

  int64_t d() const { return cfg.hidden; }
  int64_t f() const { return cfg.intermediate; }
  int64_t hd() const { return int64_t(cfg.heads) * cfg.head_dim; }
  int64_t kvd() const { return int64_t(cfg.kv_heads) * cfg.head_dim; }
  int64_t widest_site() const { return std::max({d(), hd(), f()}); }

  void use_device() const { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }
  void ensure_window(int64_t T);
  void ensure_rope(int64_t T);
  const __nv_bfloat16* as_bf16(const float* x, int64_t count);
  void linear(const LinearWeights& w, const float* X, const __nv_bfloat16* X16, int64_t T, float* y,
              float beta);
  void rmsnorm(const float* in, const float* weight, int64_t T, float* out);
  void add_bias(float* y, int64_t rows, int64_t cols, const DeviceArray<float>& bias);
  void attention(int64_t T);
  void layer_forward(int l, int64_t T);
  void enqueue_logits_chunk(int64_t chunk, int64_t T, const __nv_bfloat16* h16);

  ~Impl() {
    // Best effort: nothing here may throw.
    cudaSetDevice(device);
    if (stream) cudaStreamSynchronize(stream);
    for (float* p : host_logits)
      if (p) cudaFreeHost(p);
    for (cudaEvent_t e : chunk_ready)
      if (e) cudaEventDestroy(e);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }
};

CudaEngine::CudaEngine(const EngineConfig& config, int device, EngineGemm gemm,
                       int logits_chunk_rows)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = config;
  m.device = device;
  m.gemm = gemm;
  const EngineConfig& c = m.cfg;
  if (c.hidden <= 0 || c.intermediate <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab <= 0 || c.heads % c.kv_heads != 0 || c.head_dim % 2 != 0 ||
      int64_t(c.inv_freq.size()) != c.head_dim / 2)
    throw Error("cuda", "model shape not supported by the CUDA forward");
  if (logits_chunk_rows < 1) throw Error("forward options", "chunk sizes must be at least 1");
  m.chunk_rows = logits_chunk_rows;

  int count = 0;
  check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    throw Error("cuda", "device " + std::to_string(device) + " does not exist (" +
                            std::to_string(count) + " present)");
  m.use_device();
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  m.multiprocessors = prop.multiProcessorCount;
  char details[96];
  std::snprintf(details, sizeof details, " (device %d, sm_%d%d, %.1f GiB, %d SMs)", device,
                prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                prop.multiProcessorCount);
  m.device_line = std::string("CUDA: ") + prop.name + details;

  // Weights as they will sit on the device, checked against the free memory up front so a
  // model that cannot fit fails here with a sentence rather than deep in an upload.
  const uint64_t elem = gemm == EngineGemm::bf16 ? 2 : 4;
  const uint64_t d = c.hidden, f = c.intermediate, hd = m.hd(), kvd = m.kvd(), V = c.vocab;
  const uint64_t per_layer = (hd * d + 2 * kvd * d + d * hd + 3 * d * f) * elem +
                             (2 * d + (c.qkv_bias ? hd + 2 * kvd : 0) + (c.o_bias ? d : 0)) * 4;
  uint64_t total = per_layer * uint64_t(c.layers) + V * d * 4 + d * 4;
  if (!c.tied_lm_head || gemm == EngineGemm::bf16) total += V * d * elem;
  if (gemm == EngineGemm::bf16) total += std::max(d * f, d * hd) * 4;  // staging
  m.weight_bytes = total;
  size_t free_bytes = 0, total_bytes = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (total + kHeadroomBytes > free_bytes) {
    char msg[320];
    std::snprintf(msg, sizeof msg,
                  "the model needs %.2f GiB of device memory for its weights (%s) plus working "
                  "buffers, device %d has %.2f GiB free; use --backend cpu",
                  static_cast<double>(total) / (1024.0 * 1024.0 * 1024.0),
                  gemm == EngineGemm::bf16 ? "BF16" : "FP32", device,
                  static_cast<double>(free_bytes) / (1024.0 * 1024.0 * 1024.0));
    throw Error("cuda", msg);
  }

  check_cuda(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cublas(cublasCreate(&m.blas), "cublasCreate");
  check_cublas(cublasSetStream(m.blas, m.stream), "cublasSetStream");
  // Plain FP32 (no TF32) for sgemm: the parity path. BF16 GEMMs name their compute type.
  check_cublas(cublasSetMathMode(m.blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  for (cudaEvent_t& e : m.chunk_ready)
    check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  const size_t chunk_floats = size_t(m.chunk_rows) * size_t(V);
  for (float*& p : m.host_logits)
    check_cuda(cudaMallocHost(&p, chunk_floats * sizeof(float)), "cudaMallocHost (logits)");

  m.layers.resize(size_t(c.layers));
  m.embedding.allocate(V * d, "embedding table");
  m.final_norm.allocate(d, "final norm");
  if (gemm == EngineGemm::bf16)
    m.lm_head16.allocate(V * d, "lm_head (BF16)");
  else if (!c.tied_lm_head)
    m.lm_head.allocate(V * d, "lm_head");
}

CudaEngine::~CudaEngine() = default;

const std::string& CudaEngine::device_line() const {
  return impl_->device_line;
}
uint64_t CudaEngine::weight_bytes() const {
  return impl_->weight_bytes;
}

void CudaEngine::upload_embedding_rows(int64_t row_begin, int64_t rows, const float* data) {
  Impl& m = *impl_;
  if (row_begin != m.embedding_rows_done || rows < 0 || row_begin + rows > m.cfg.vocab)
    throw Error("cuda", "embedding rows uploaded out of order");
  m.use_device();
  upload(m.embedding.get() + row_begin * m.d(), data, size_t(rows * m.d()), m.stream,
         "embedding rows");
  m.embedding_rows_done += rows;
}

void CudaEngine::upload_lm_head_rows(int64_t row_begin, int64_t rows, const float* data) {
  Impl& m = *impl_;
  if (m.cfg.tied_lm_head) throw Error("cuda", "the lm_head is the embedding table (tied)");
  if (row_begin != m.lm_head_rows_done || rows < 0 || row_begin + rows > m.cfg.vocab)
    throw Error("cuda", "lm_head rows uploaded out of order");
  m.use_device();
  const size_t count = size_t(rows * m.d());
  if (m.gemm == EngineGemm::bf16) {
    m.staging.ensure(count, "BF16 staging");
    upload(m.staging.get(), data, count, m.stream, "lm_head rows");
    convert_bf16(m.staging.get(), m.lm_head16.get() + row_begin * m.d(), int64_t(count), m.stream);
    check_cuda(cudaStreamSynchronize(m.stream), "lm_head conversion to BF16");
  } else {
    upload(m.lm_head.get() + row_begin * m.d(), data, count, m.stream, "lm_head rows");
  }
  m.lm_head_rows_done += rows;
}

void CudaEngine::upload_final_norm(const float* data) {
  Impl& m = *impl_;
  m.use_device();
  upload(m.final_norm.get(), data, size_t(m.d()), m.stream, "final norm");
}

void CudaEngine::upload_layer_vector(int layer, LayerVector which, const float* data) {
  Impl& m = *impl_;
  if (layer < 0 || layer >= m.cfg.layers) throw Error("cuda", "layer out of range");
  int64_t size = 0;
  switch (which) {
    case LayerVector::input_norm:
    case LayerVector::post_norm:
    case LayerVector::o_bias:
      size = m.d();
      break;
    case LayerVector::q_bias:
      size = m.hd();
      break;
    case LayerVector::k_bias:
    case LayerVector::v_bias:
      size = m.kvd();
      break;
  }
  m.use_device();
  DeviceArray<float>& dst = m.layers[size_t(layer)].vectors[size_t(which)];
  dst.allocate(size_t(size), "layer vector");
  upload(dst.get(), data, size_t(size), m.stream, "layer vector");
}

void CudaEngine::upload_linear(int layer, int linear, const float* data, int64_t rows,
                               int64_t cols) {
  Impl& m = *impl_;
  if (layer < 0 || layer >= m.cfg.layers || linear < 0 || linear >= kLinears)
    throw Error("cuda", "linear out of range");
  const int64_t expect_rows[kLinears] = {m.hd(), m.kvd(), m.kvd(), m.d(), m.f(), m.f(), m.d()};
  const int64_t expect_cols[kLinears] = {m.d(), m.d(), m.d(), m.hd(), m.d(), m.d(), m.f()};
  if (rows != expect_rows[linear] || cols != expect_cols[linear])
    throw Error("cuda", std::string(linear_label(linear)) + " of layer " + std::to_string(layer) +
                            " has the wrong shape");
  m.use_device();
  LinearWeights& w = m.layers[size_t(layer)].linears[size_t(linear)];
  w.rows = rows;
  w.cols = cols;
  const size_t count = size_t(rows * cols);
  if (m.gemm == EngineGemm::bf16) {
    m.staging.ensure(count, "BF16 staging");
    upload(m.staging.get(), data, count, m.stream, linear_label(linear));
    w.bf16.allocate(count, linear_label(linear));
    convert_bf16(m.staging.get(), w.bf16.get(), int64_t(count), m.stream);
    check_cuda(cudaStreamSynchronize(m.stream), "weight conversion to BF16");
  } else {
    w.f32.allocate(count, linear_label(linear));
    upload(w.f32.get(), data, count, m.stream, linear_label(linear));
  }
}

void CudaEngine::set_site(int layer, int site, const SiteDesc& desc) {
  Impl& m = *impl_;
  if (layer < 0 || layer >= m.cfg.layers || site < 0 || site >= kSites)
    throw Error("cuda", "site out of range");
  const int64_t channels[kSites] = {m.d(), m.hd(), m.d(), m.f()};
  const std::string where =
      "layer " + std::to_string(layer) + " site " + site_label(site) + " (cuda)";
  if (desc.channels != channels[site])
    throw Error(where, "transform for " + std::to_string(desc.channels) +
                           " channels, the site has " + std::to_string(channels[site]));
  m.use_device();
  m.layers[size_t(layer)].sites[size_t(site)] = DeviceSite(desc, where, m.stream);
}

void CudaEngine::finish_upload() {
  Impl& m = *impl_;
  const EngineConfig& c = m.cfg;
  auto missing = [](const std::string& what) {
    throw Error("cuda", what + " was not uploaded (internal error)");
  };
  if (m.embedding_rows_done != c.vocab) missing("the embedding table");
  if (!c.tied_lm_head && m.lm_head_rows_done != c.vocab) missing("the lm_head");
  for (int l = 0; l < c.layers; ++l) {
    const LayerState& L = m.layers[size_t(l)];
    for (int i = 0; i < kLinears; ++i)
      if (L.linears[size_t(i)].rows == 0)
        missing(std::string(linear_label(i)) + " of layer " + std::to_string(l));
    const bool needed[kLayerVectors] = {true, true, c.qkv_bias, c.qkv_bias, c.qkv_bias, c.o_bias};
    for (int i = 0; i < kLayerVectors; ++i)
      if (needed[i] && !L.vectors[size_t(i)])
        missing("a norm or bias of layer " + std::to_string(l));
  }
  m.use_device();
  if (m.gemm == EngineGemm::bf16 && c.tied_lm_head) {
    convert_bf16(m.embedding.get(), m.lm_head16.get(), int64_t(c.vocab) * m.d(), m.stream);
    check_cuda(cudaStreamSynchronize(m.stream), "lm_head conversion to BF16");
  }
  m.staging.release();
  m.finished = true;
}

void CudaEngine::Impl::ensure_window(int64_t T) {
  if (T <= capacity) return;
  // Each allocate() releases the old buffer before asking for the new one, so a cudaMalloc that
  // fails part-way leaves some buffers null or too small. Forget the capacity first: a later run
  // then allocates everything again instead of using those buffers (null or out-of-bounds
  // pointers in the kernels).
  capacity = 0;
  const size_t t = size_t(T);
  ids.allocate(t, "token ids");
  x.allocate(t * size_t(d()), "residual stream");
  n.allocate(t * size_t(d()), "normed activations");
  q.allocate(t * size_t(hd()), "queries");
  k.allocate(t * size_t(kvd()), "keys");
  v.allocate(t * size_t(kvd()), "values");
  att.allocate(t * size_t(hd()), "attention output");
  gate.allocate(t * size_t(f()), "gate activations");
  up.allocate(t * size_t(f()), "up activations");
  scratch.allocate(t * size_t(widest_site()), "site scratch");
  if (gemm == EngineGemm::bf16) act16.allocate(t * size_t(widest_site()), "BF16 activations");
  const size_t per_query_row = size_t(cfg.heads) * t * sizeof(float);
  attention_rows = std::clamp<int64_t>(int64_t(kScoresBudgetBytes / per_query_row), 1, T);
  scores.allocate(size_t(cfg.heads) * size_t(attention_rows) * t, "attention scores");
  logits.allocate(size_t(chunk_rows) * size_t(cfg.vocab), "logits");
  capacity = T;
}

void CudaEngine::Impl::ensure_rope(int64_t T) {
  if (T <= rope_positions) return;
  rope_positions = 0;  // as in ensure_window: a failed allocation must not leave a stale count
  const int64_t half = int64_t(cfg.inv_freq.size());
  std::vector<float> c(size_t(T * half)), s(size_t(T * half));
  for (int64_t p = 0; p < T; ++p)
    for (int64_t i = 0; i < half; ++i) {
      // As forward.cpp's ensure_rope: the angle in double, then cos/sin rounded to float.
      const double a = double(p) * cfg.inv_freq[size_t(i)];
      c[size_t(p * half + i)] = float(std::cos(a));
      s[size_t(p * half + i)] = float(std::sin(a));
    }
  rope_cos.allocate(c.size(), "RoPE cosines");
  rope_sin.allocate(s.size(), "RoPE sines");
  upload(rope_cos.get(), c.data(), c.size(), stream, "RoPE cosines");
  upload(rope_sin.get(), s.data(), s.size(), stream, "RoPE sines");
  rope_positions = T;
}

const __nv_bfloat16* CudaEngine::Impl::as_bf16(const float* src, int64_t count) {
  if (gemm != EngineGemm::bf16) return nullptr;
  convert_bf16(src, act16.get(), count, stream);
  return act16.get();
}

// y [T, w.rows] (row-major, ld w.rows) = beta·y + X·Wᵀ, X [T, w.cols]. cuBLAS is column-major:
// yᵀ = W·Xᵀ with W read as the column-major [cols, rows] matrix transposed.
void CudaEngine::Impl::linear(const LinearWeights& w, const float* X, const __nv_bfloat16* X16,
                              int64_t T, float* y, float beta) {
  const float alpha = 1.0f;
  const int m = to_int(w.rows, "GEMM rows"), n = to_int(T, "GEMM tokens"),
            kk = to_int(w.cols, "GEMM depth");
  if (gemm == EngineGemm::bf16) {
    check_cublas(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &alpha, w.bf16.get(),
                              CUDA_R_16BF, kk, X16, CUDA_R_16BF, kk, &beta, y, CUDA_R_32F, m,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (BF16 linear)");
  } else {
    check_cublas(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, kk, &alpha, w.f32.get(), kk, X,
                             kk, &beta, y, m),
                 "cublasSgemm (linear)");
  }
}

void CudaEngine::Impl::rmsnorm(const float* in, const float* weight, int64_t T, float* out) {
  if (T > INT_MAX) throw Error("cuda", "too many positions for the RMSNorm kernel");
  rmsnorm_kernel<<<static_cast<unsigned>(T), kNormThreads, 0, stream>>>(in, cfg.hidden, weight,
                                                                        cfg.rms_norm_eps, out);
  check_launch("rmsnorm_kernel");
}

void CudaEngine::Impl::add_bias(float* y, int64_t rows, int64_t cols,
                                const DeviceArray<float>& bias) {
  if (!bias) return;
  add_bias_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(y, rows, int(cols), bias.get());
  check_launch("add_bias_kernel");
}

// Causal GQA attention over all heads, query rows in chunks (scores of a chunk: [H, rows,
// keys]). Head h uses KV head h / group; a strided-batched GEMM covers the KV heads for one
// offset g inside the group, so `group` calls per product.
void CudaEngine::Impl::attention(int64_t T) {
  const int H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim, group = H / Hkv;
  const int64_t HD = hd(), KVD = kvd();
  const float one = 1.0f, zero = 0.0f;
  const float scale = 1.0f / std::sqrt(float(D));
  for (int64_t r0 = 0; r0 < T; r0 += attention_rows) {
    const int64_t rows = std::min(attention_rows, T - r0), keys = r0 + rows;
    const int rows_i = to_int(rows, "attention rows"), keys_i = to_int(keys, "attention keys");
    const long long chunk = static_cast<long long>(rows * keys);
    for (int g = 0; g < group; ++g) {
      // S_h (keys × rows, column-major) = K_kvᵀ · Q_h.
      check_cublas(cublasSgemmStridedBatched(
                       blas, CUBLAS_OP_T, CUBLAS_OP_N, keys_i, rows_i, D, &one, k.get(),
                       to_int(KVD, "KV width"), D, q.get() + r0 * HD + int64_t(g) * D,
                       to_int(HD, "Q width"), static_cast<long long>(group) * D, &zero,
                       scores.get() + g * chunk, keys_i, group * chunk, Hkv),
                   "cublasSgemmStridedBatched (attention scores)");
    }
    const int64_t head_rows = int64_t(H) * rows;
    const unsigned blocks = static_cast<unsigned>((head_rows + kSoftmaxWarps - 1) / kSoftmaxWarps);
    causal_softmax_kernel<<<blocks, kSoftmaxWarps * 32, 0, stream>>>(scores.get(), head_rows,
                                                                     rows_i, keys_i, r0, scale);
    check_launch("causal_softmax_kernel");
    for (int g = 0; g < group; ++g) {
      // O_h (D × rows, column-major, ld H·D) = V_kv · P_h.
      check_cublas(cublasSgemmStridedBatched(
                       blas, CUBLAS_OP_N, CUBLAS_OP_N, D, rows_i, keys_i, &one, v.get(),
                       to_int(KVD, "KV width"), D, scores.get() + g * chunk, keys_i, group * chunk,
                       &zero, att.get() + r0 * HD + int64_t(g) * D, to_int(HD, "attention width"),
                       static_cast<long long>(group) * D, Hkv),
                   "cublasSgemmStridedBatched (attention output)");
    }
  }
}

void CudaEngine::Impl::layer_forward(int l, int64_t T) {
  LayerState& L = layers[size_t(l)];
  auto vec = [&](LayerVector which) -> const DeviceArray<float>& {
    return L.vectors[size_t(which)];
  };
  auto site = [&](int s, float* a) {
    L.sites[size_t(s)].apply(a, T, scratch.get(), multiprocessors, stream);
  };

  // Attention block: x += o_proj(attn(rope(q), rope(k), v)), inputs normed.
  rmsnorm(x.get(), vec(LayerVector::input_norm).get(), T, n.get());
  site(0, n.get());
  const __nv_bfloat16* n16 = as_bf16(n.get(), T * d());
  linear(L.linears[0], n.get(), n16, T, q.get(), 0.0f);
  linear(L.linears[1], n.get(), n16, T, k.get(), 0.0f);
  linear(L.linears[2], n.get(), n16, T, v.get(), 0.0f);
  add_bias(q.get(), T, hd(), vec(LayerVector::q_bias));
  add_bias(k.get(), T, kvd(), vec(LayerVector::k_bias));
  add_bias(v.get(), T, kvd(), vec(LayerVector::v_bias));
  rope_kernel<<<grid_for(T * hd() / 2), kThreads, 0, stream>>>(q.get(), T, cfg.heads, cfg.head_dim,
                                                               rope_cos.get(), rope_sin.get());
  check_launch("rope_kernel (q)");
  rope_kernel<<<grid_for(T * kvd() / 2), kThreads, 0, stream>>>(
      k.get(), T, cfg.kv_heads, cfg.head_dim, rope_cos.get(), rope_sin.get());
  check_launch("rope_kernel (k)");
  attention(T);
  site(1, att.get());
  linear(L.linears[3], att.get(), as_bf16(att.get(), T * hd()), T, x.get(), 1.0f);
  add_bias(x.get(), T, d(), vec(LayerVector::o_bias));

  // MLP block: x += down(silu(gate(n)) ⊙ up(n)).
  rmsnorm(x.get(), vec(LayerVector::post_norm).get(), T, n.get());
  site(2, n.get());
  const __nv_bfloat16* n16b = as_bf16(n.get(), T * d());
  linear(L.linears[4], n.get(), n16b, T, gate.get(), 0.0f);
  linear(L.linears[5], n.get(), n16b, T, up.get(), 0.0f);
  swiglu_kernel<<<grid_for(T * f()), kThreads, 0, stream>>>(gate.get(), up.get(), T * f());
  check_launch("swiglu_kernel");
  site(3, gate.get());
  linear(L.linears[6], gate.get(), as_bf16(gate.get(), T * f()), T, x.get(), 1.0f);
}

void CudaEngine::Impl::enqueue_logits_chunk(int64_t chunk, int64_t T, const __nv_bfloat16* h16) {
  const int64_t r0 = chunk * chunk_rows, rows = std::min<int64_t>(chunk_rows, T - r0);
  const float alpha = 1.0f, beta = 0.0f;
  const int V = cfg.vocab, dd = cfg.hidden, rows_i = to_int(rows, "logits rows");
  if (gemm == EngineGemm::bf16) {
    check_cublas(
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, V, rows_i, dd, &alpha, lm_head16.get(),
                     CUDA_R_16BF, dd, h16 + r0 * dd, CUDA_R_16BF, dd, &beta, logits.get(),
                     CUDA_R_32F, V, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx (BF16 lm_head)");
  } else {
    const float* lm = cfg.tied_lm_head ? embedding.get() : lm_head.get();
    check_cublas(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, V, rows_i, dd, &alpha, lm, dd,
                             n.get() + r0 * dd, dd, &beta, logits.get(), V),
                 "cublasSgemm (lm_head)");
  }
  const size_t slot = size_t(chunk % 2);
  check_cuda(cudaMemcpyAsync(host_logits[slot], logits.get(), size_t(rows) * V * sizeof(float),
                             cudaMemcpyDeviceToHost, stream),
             "copy of logits to the host");
  check_cuda(cudaEventRecord(chunk_ready[slot], stream), "cudaEventRecord");
}

void CudaEngine::run(const int32_t* tokens, int64_t T, const ChunkFn& fn) {
  Impl& m = *impl_;
  if (!m.finished) throw Error("cuda", "the model's upload is not finished (internal error)");
  if (T <= 0) throw Error("token ids", "empty window");
  m.use_device();
  // A previous run that ended in an exception may have left work queued.
  check_cuda(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
  m.ensure_window(T);
  m.ensure_rope(T);
  check_cuda(cudaMemcpyAsync(m.ids.get(), tokens, size_t(T) * sizeof(int32_t),
                             cudaMemcpyHostToDevice, m.stream),
             "copy of token ids to the device");
  gather_rows_kernel<<<grid_for(T * m.d()), kThreads, 0, m.stream>>>(
      m.ids.get(), T, m.embedding.get(), m.cfg.hidden, m.x.get());
  check_launch("gather_rows_kernel");
  for (int l = 0; l < m.cfg.layers; ++l) m.layer_forward(l, T);
  m.rmsnorm(m.x.get(), m.final_norm.get(), T, m.n.get());
  const __nv_bfloat16* h16 = m.as_bf16(m.n.get(), T * m.d());

  // Chunk c+1's GEMM and copy run while the host consumes chunk c (two pinned buffers).
  const int64_t chunks = (T + m.chunk_rows - 1) / m.chunk_rows;
  m.enqueue_logits_chunk(0, T, h16);
  for (int64_t c = 0; c < chunks; ++c) {
    if (c + 1 < chunks) m.enqueue_logits_chunk(c + 1, T, h16);
    const size_t slot = size_t(c % 2);
    check_cuda(cudaEventSynchronize(m.chunk_ready[slot]), "forward on the device");
    const int64_t r0 = c * m.chunk_rows, rows = std::min<int64_t>(m.chunk_rows, T - r0);
    fn(r0, rows, m.host_logits[slot]);
  }
}

}  // namespace mxlens::gpu::detail
