#pragma once
// The DuQuant++ greedy rotation search, step by step (algorithm.md §4.2-§4.4): the base
// matrix M₀, the step matrix M = M₀·diag(1, Q'), the swapped steps S_d = E_d·M·E_d, and the
// trace a search leaves behind: every evaluation's objective, where the max and min sat and
// which channel was chosen, plus Q' and its seed, so that any prefix of the search can be
// rebuilt exactly (the GUI replays it, tests check it).
#include <cstdint>
#include <string_view>
#include <vector>

#include <Eigen/Core>

namespace mxlens {

// Which channel a step spreads (algorithm.md §4.4, §11).
enum class GreedySelection : uint8_t {
  paper,  // column (channel within the block) of the largest-magnitude entry — default
  code,   // row index of that entry mod n (what the released code computes)
};
// What the search minimizes over the whole calibration matrix Z.
enum class GreedyObjective : uint8_t {
  range,    // max(Z) − min(Z) (released code) — default
  max_abs,  // max |Z| (paper)
};
std::string_view to_string(GreedySelection selection);
std::string_view to_string(GreedyObjective objective);
// "paper" / "code", "range" / "max_abs"; anything else throws Error(source, ...).
GreedySelection parse_greedy_selection(std::string_view name,
                                       std::string_view source = "--selection");
GreedyObjective parse_greedy_objective(std::string_view name,
                                       std::string_view source = "--objective");

// M₀ of algorithm.md §4.2 (n×n, orthogonal, row 0 constant 1/√n). n ≥ 2, else Error.
Eigen::MatrixXd duquant_base_matrix(int n);
// M = M₀·diag(1, Q') (n×n).
Eigen::MatrixXd greedy_step_matrix(const Eigen::MatrixXd& base, const Eigen::MatrixXd& q_prime);
// S_d = E_d·M·E_d: M with rows 0,d and columns 0,d swapped (S_0 = M).
Eigen::MatrixXd swapped_step_matrix(const Eigen::MatrixXd& M, int d);

// One evaluation t of the search: the state after t steps, Z_t = Z·S_{ids[0]}···S_{ids[t−1]}.
struct GreedyStep {
  int32_t channel = 0;   // ids[t]: the channel d that step t+1 would swap to 0 and spread
  double objective = 0;  // peaks[t]
  int64_t max_row = 0, max_col = 0;  // first position (row-major) of max(Z_t)
  int64_t min_row = 0, min_col = 0;  // first position of min(Z_t)
  float max_value = 0, min_value = 0;
};

struct GreedyTrace {
  int block_size = 32;  // n
  GreedySelection selection = GreedySelection::paper;
  GreedyObjective objective = GreedyObjective::range;
  uint64_t q_seed = 0;            // the seed Q' was drawn from (random_orthogonal_d(n−1, q_seed))
  Eigen::MatrixXd q_prime;        // (n−1)×(n−1)
  std::vector<GreedyStep> steps;  // S+1 evaluations, t = 0..S
  int best_step = 0;              // k* = first argmin of the objectives

  int max_steps() const { return int(steps.size()) - 1; }  // S
  std::vector<double> objectives() const;                  // peaks
  std::vector<int32_t> channels() const;                   // ids
  Eigen::MatrixXd step_matrix() const;                     // M (from q_prime)
  // R after k steps: S_{ids[0]}·…·S_{ids[k−1]} (I for k = 0); 0 ≤ k ≤ S, else Error.
  Eigen::MatrixXd matrix_at_step(int k) const;
  // The search's result, matrix_at_step(best_step) in float32.
  Eigen::MatrixXf rotation() const;
};

}  // namespace mxlens
