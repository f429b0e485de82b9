// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/quant_scheme.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "core/mx/mxfp4.h"
#include "core/mx/nvfp4.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kMxBlock = 32;
constexpr int kNvBlock = 16;
// Rows per parallel chunk of the block-local paths (amortizes the call overhead).
constexpr int64_t kRowsPerChunk = 16;

// Calls fn(span of one contiguous row-major tensor [rows, cols'], cols') on m itself when its
// rows are contiguous and `block` divides cols, else on a zero-padded copy (cols' = cols
// rounded up to `block`) that is copied back. Zero padding leaves every block maximum as it is,
// so a short last block is quantized as a block of its own.
template <class Fn>
void on_blocked_tensor(Eigen::Ref<RowMatrixXf> m, int block, Fn&& fn) {
  const int64_t rows = m.rows(), cols = m.cols();
  if (cols % block == 0 && (rows <= 1 || m.outerStride() == cols)) {
    fn(std::span<float>(m.data(), size_t(rows * cols)), cols);
    return;
  }
  const int64_t padded = (cols + block - 1) / block * block;
  RowMatrixXf tmp = RowMatrixXf::Zero(rows, padded);
  tmp.leftCols(cols) = m;
  fn(std::span<float>(tmp.data(), size_t(rows * padded)), padded);
  m = tmp.leftCols(cols);
}

// Splits the rows of a contiguous [rows, cols] tensor among threads; fn(span of some rows).
template <class Fn>
void by_row_chunks(std::span<float> data, int64_t cols, int threads, Fn&& fn) {
  const int64_t rows = cols ? int64_t(data.size()) / cols : 0;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (threads <= 1 || chunks <= 1) {
    fn(data);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = c * kRowsPerChunk, n = std::min(kRowsPerChunk, rows - r0);
    fn(data.subspan(size_t(r0 * cols), size_t(n * cols)));
  }
}

// Asymmetric uniform INT4 of one row (OmniQuant/DuQuant UniformAffineQuantizer, 4 bits).
void fake_quantize_int4_row(float* x, int64_t n, float clip) {
  if (n == 0) return;
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo *= clip;
  hi *= clip;
  const float scale = std::max((hi - lo) / 15.0f, 1e-5f);
  const float zero = std::nearbyint(-lo / scale);
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] / scale) + zero, 0.0f, 15.0f);
    x[i] = (q - zero) * scale;
  }
}

}  // namespace

QuantScheme QuantScheme::make(QuantMode mode, QuantFormat format, QuantOptions options) {
  QuantScheme s;
  TensorQuant q{format, options, 1.0f};
  if (format == QuantFormat::none) return s;
  if (mode == QuantMode::w4a4 || mode == QuantMode::w4a16) {
    s.weights = q;
    if (format == QuantFormat::int4) s.weights.clip_ratio = kInt4WeightClip;
  }
  if (mode == QuantMode::w4a4 || mode == QuantMode::w16a4) {
    s.activations = q;
    if (format == QuantFormat::int4) s.activations.clip_ratio = kInt4ActivationClip;
  }
  validate(s.weights, "weights");
  validate(s.activations, "activations");
  return s;
}

QuantMode QuantScheme::mode() const {
  if (weights.enabled() && activations.enabled()) return QuantMode::w4a4;
  if (weights.enabled()) return QuantMode::w4a16;
  if (activations.enabled()) return QuantMode::w16a4;
  return QuantMode::none;
}

std::string QuantScheme::describe() const {
  auto one = [](std::string& s, const TensorQuant& q) {
    s.append(to_string(q.format));
    if (q.format == QuantFormat::mxfp4 || q.format == QuantFormat::nvfp4) {
      if (q.format == QuantFormat::mxfp4) s.append(" ").append(to_string(q.options.scale_rule));
      s.append(" ").append(to_string(q.options.rounding));
    }
    if (q.format == QuantFormat::int4) s.append(" clip ").append(std::to_string(q.clip_ratio));
  };
  std::string s(to_string(mode()));
  if (weights.enabled()) {
    s.append(", weights ");
    one(s, weights);
  }
  if (activations.enabled()) {
    s.append(", activations ");
    one(s, activations);
  }
  return s;
}

std::string_view to_string(QuantFormat format) {
  switch (format) {
    case QuantFormat::none:
      return "none";
    case QuantFormat::mxfp4:
      return "mxfp4";
    case QuantFormat::nvfp4:
      return "nvfp4";
    case QuantFormat::int4:
      return "int4";
  }
  return "?";
}

std::string_view to_string(QuantMode mode) {
  switch (mode) {
    case QuantMode::none:
      return "none";
    case QuantMode::w4a4:
      return "w4a4";
    case QuantMode::w4a16:
      return "w4a16";
    case QuantMode::w16a4:
      return "w16a4";
  }
  return "?";
}

QuantFormat parse_quant_format(std::string_view name, std::string_view source) {
  for (QuantFormat f :
       {QuantFormat::none, QuantFormat::mxfp4, QuantFormat::nvfp4, QuantFormat::int4})
    if (name == to_string(f)) return f;
  throw Error(std::string(source), "unknown quantization format '" + std::string(name) +
                                       "' (expected mxfp4, nvfp4, int4 or none)");
}

QuantMode parse_quant_mode(std::string_view name, std::string_view source) {
  for (QuantMode m : {QuantMode::none, QuantMode::w4a4, QuantMode::w4a16, QuantMode::w16a4})
    if (name == to_string(m)) return m;
  throw Error(std::string(source), "unknown quantization mode '" + std::string(name) +
                                       "' (expected w4a4, w4a16, w16a4 or none)");
}

void validate(const TensorQuant& q, std::string_view source) {
  if (q.format == QuantFormat::int4 && !(q.clip_ratio > 0.0f && q.clip_ratio <= 1.0f))
    throw Error(std::string(source),
                "int4 clip ratio must be in (0, 1], got " + std::to_string(q.clip_ratio));
  if (q.format == QuantFormat::nvfp4 && q.options.scale_rule != ScaleRule::ocp_floor)
    throw Error(std::string(source), "nvfp4 has its own E4M3 block scales; scale rule '" +
                                         std::string(to_string(q.options.scale_rule)) +
                                         "' applies to mxfp4 only");
}

void fake_quantize_rows(Eigen::Ref<RowMatrixXf> m, const TensorQuant& q, TensorRole role,
                        int threads) {
  if (m.size() == 0) return;
  switch (q.format) {
    case QuantFormat::none:
      return;
    case QuantFormat::mxfp4:
      on_blocked_tensor(m, kMxBlock, [&](std::span<float> t, int64_t cols) {
        if (q.options.scale_rule == ScaleRule::dqv2_log8)
          fake_quantize_mxfp4(t, q.options);  // one range over the whole tensor
        else
          by_row_chunks(t, cols, threads,
                        [&](std::span<float> c) { fake_quantize_mxfp4(c, q.options); });
      });
      return;
    case QuantFormat::nvfp4:
      on_blocked_tensor(m, kNvBlock, [&](std::span<float> t, int64_t cols) {
        if (role == TensorRole::weights) {
          fake_quantize_nvfp4(t, q.options);
          return;
        }
        by_row_chunks(t, cols, threads, [&](std::span<float> c) {
          for (size_t r = 0; r < c.size(); r += size_t(cols))
            fake_quantize_nvfp4(c.subspan(r, size_t(cols)), q.options);
        });
      });
      return;
    case QuantFormat::int4: {
      const int64_t rows = m.rows(), cols = m.cols();
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (threads > 1 && rows > kRowsPerChunk)
      for (int64_t r = 0; r < rows; ++r)
        fake_quantize_int4_row(m.row(r).data(), cols, q.clip_ratio);
      return;
    }
  }
}

}  // namespace mxlens
