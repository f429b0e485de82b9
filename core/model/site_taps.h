#pragma once
// The four linear-input sites of a decoder layer (algorithm.md §0) and the tap interface
// through which calibration reads and quantization replaces what flows into them.
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include <Eigen/Core>

namespace mxlens {

// tokens × channels, row-major: each token's channels are contiguous, so the 32-element MX
// blocks of one token are contiguous in memory.
using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

enum class Site {
  Qkv,     // input of q/k/v_proj = output of input_layernorm            [tokens, d]
  O,       // input of o_proj = attention output, heads concatenated     [tokens, H·D]
  GateUp,  // input of gate/up_proj = output of post_attention_layernorm [tokens, d]
  Down,    // input of down_proj = silu(gate) ⊙ up                       [tokens, f]
};
inline constexpr std::array<Site, 4> kAllSites = {Site::Qkv, Site::O, Site::GateUp, Site::Down};

// "qkv", "o", "gu", "down": the names used in files, flags and the GUI.
constexpr std::string_view site_name(Site site) {
  switch (site) {
    case Site::Qkv:
      return "qkv";
    case Site::O:
      return "o";
    case Site::GateUp:
      return "gu";
    case Site::Down:
      return "down";
  }
  return "?";
}

// The seven linears of a decoder layer, in the order the forward runs them.
enum class Linear { Q, K, V, O, Gate, Up, Down };
inline constexpr std::array<Linear, 7> kAllLinears = {
    Linear::Q, Linear::K, Linear::V, Linear::O, Linear::Gate, Linear::Up, Linear::Down};
constexpr std::string_view linear_name(Linear linear) {
  switch (linear) {
    case Linear::Q:
      return "q_proj";
    case Linear::K:
      return "k_proj";
    case Linear::V:
      return "v_proj";
    case Linear::O:
      return "o_proj";
    case Linear::Gate:
      return "gate_proj";
    case Linear::Up:
      return "up_proj";
    case Linear::Down:
      return "down_proj";
  }
  return "?";
}
constexpr Site site_of(Linear linear) {
  switch (linear) {
    case Linear::Q:
    case Linear::K:
    case Linear::V:
      return Site::Qkv;
    case Linear::O:
      return Site::O;
    case Linear::Gate:
    case Linear::Up:
      return Site::GateUp;
    case Linear::Down:
      return Site::Down;
  }
  return Site::Qkv;
}

// Hooks the forward calls at every layer. Both forwards (the fast one and the scalar
// reference) call them; the reference calls on_activations once per token (x has one row).
class SiteTaps {
 public:
  virtual ~SiteTaps() = default;

  // Called with the input of the linears of `site` in `layer`, before they run. The tap may
  // read x and overwrite it in place (e.g. rotate and fake-quantize); the linears then use
  // what x holds. x has one row per token of the window.
  virtual void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) = 0;

  // Called once per layer and linear, before its first use in this forward. `w` is the
  // weight the model would use, [out, in] row-major. Return a pointer to a replacement of
  // the same shape (row-major, owned by the tap and alive until the forward returns), or
  // nullptr to keep `w`. Default: keep.
  virtual const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                                       int in) {
    return nullptr;
  }

  // Called before the RMSNorm that produces `site`'s input (Qkv: input_layernorm, GateUp:
  // post_attention_layernorm) with its weight γ ([hidden]). Return a replacement γ' (owned by
  // the tap, alive until on_activations of that site returns), or nullptr to keep γ. Smoothing
  // folds γ ← γ/s here, so the norm computes x̂·(γ/s) exactly as an exported checkpoint does.
  virtual const float* norm_override(int layer, Site site, std::span<const float> gamma) {
    return nullptr;
  }
};

}  // namespace mxlens
