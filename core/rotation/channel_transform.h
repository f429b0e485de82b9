#pragma once
// An orthogonal map T on the input channels of a linear (algorithm.md §4.5, §5.1, §5.3-§5.5).
//
//   activations (online):  x' = x · T
//   weights (offline):     W' = W · T        (rows of W are input-channel vectors)
//   so x' W'ᵀ = x T Tᵀ Wᵀ = x Wᵀ.
//
// T is a product of steps applied in the order they were added (x·T₁·T₂·…):
//   - block rotation blockdiag(R) = I_{C/b} ⊗ R, R b×b orthogonal, b divides C;
//   - channel permutation P: y[:, j] = x[:, perm[j]];
//   - full-size normalized Hadamard (QuaRot): H_C/√C, C = m·2^p with m ∈ {1, 12, 20, 28}
//     (H_m ⊗ H_{2^p}), optionally followed by seeded random signs: x·H·diag(s)/√C.
// Both sides (activations and weights) use apply_rows, since both are "rows · T".
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/model/site_taps.h"

namespace mxlens {

class ChannelTransform {
 public:
  enum class StepKind { BlockRotation, Permutation, FullHadamard };
  struct Step {
    StepKind kind = StepKind::BlockRotation;
    Eigen::MatrixXf rotation;          // BlockRotation: b×b (b = rotation.rows())
    std::vector<int32_t> permutation;  // Permutation: y[:, j] = x[:, permutation[j]]
    int channels = 0;                  // Permutation / FullHadamard: the size it needs
    uint64_t sign_seed = 0;            // FullHadamard: 0 = no random signs
    std::vector<float> signs;          // FullHadamard: ±1 per channel (empty = all +1)
  };

  // R must be square, non-empty and orthogonal (‖RRᵀ−I‖∞ < tolerance), else Error. Matrices
  // read from files stored in BF16 need a looser tolerance (≈ 1e-2).
  void add_block_rotation(Eigen::MatrixXf R, double orthogonality_tolerance = 1e-4);
  // perm must be a permutation of 0..n-1, else Error.
  void add_permutation(std::vector<int32_t> perm);
  // Throws Error("full Hadamard", "full Hadamard of size N unsupported ...") when no
  // construction for `channels` exists (see hadamard.h: full_hadamard_supported).
  void add_full_hadamard(int channels, uint64_t sign_seed /*0 = no random signs*/);
  // Appends every step of `other` after this transform's steps (x·T·T_other).
  void append(const ChannelTransform& other);

  bool empty() const { return steps_.empty(); }
  const std::vector<Step>& steps() const { return steps_; }

  // The exact channel count this transform needs, or 0 when any multiple of
  // channel_multiple() is accepted (block rotations only, or no steps).
  int channels_required() const;
  // Least common multiple of the block sizes (1 when there are none).
  int channel_multiple() const;
  bool accepts(int channels) const;
  // Throws Error(source, "...") naming the channel count and what the transform needs.
  void check_channels(int channels, const std::string& source) const;

  // x ← x·T, in place, every row (x: rows × C, row-major). Block rotations run as one GEMM
  // of the [rows·C/b, b] view by R; Hadamard steps as fast Walsh–Hadamard transforms.
  // Throws Error if !accepts(x.cols()). `threads` ≤ 0: OpenMP default.
  void apply_rows(Eigen::Ref<RowMatrixXf> x, int threads = 0) const;
  // x ← x·Tᵀ = x·T⁻¹ (undo apply_rows).
  void apply_rows_inverse(Eigen::Ref<RowMatrixXf> x, int threads = 0) const;

  // T itself (C×C, double), for tests and views. Throws Error if !accepts(channels).
  Eigen::MatrixXd dense(int channels) const;

 private:
  std::vector<Step> steps_;
};

}  // namespace mxlens
