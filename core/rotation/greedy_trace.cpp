#include "core/rotation/greedy_trace.h"

#include <cmath>
#include <string>

#include "core/util/error.h"

namespace mxlens {

std::string_view to_string(GreedySelection selection) {
  return selection == GreedySelection::paper ? "paper" : "code";
}

std::string_view to_string(GreedyObjective objective) {
  return objective == GreedyObjective::range ? "range" : "max_abs";
}

GreedySelection parse_greedy_selection(std::string_view name, std::string_view source) {
  if (name == "paper") return GreedySelection::paper;
  if (name == "code") return GreedySelection::code;
  throw Error(std::string(source),
              "unknown greedy selection '" + std::string(name) + "' (use paper or code)");
}

GreedyObjective parse_greedy_objective(std::string_view name, std::string_view source) {
  if (name == "range") return GreedyObjective::range;
  if (name == "max_abs") return GreedyObjective::max_abs;
  throw Error(std::string(source),
              "unknown greedy objective '" + std::string(name) + "' (use range or max_abs)");
}

Eigen::MatrixXd duquant_base_matrix(int n) {
  if (n < 2) throw Error("greedy rotation", "block size must be ≥ 2, got " + std::to_string(n));
  Eigen::MatrixXd R = Eigen::MatrixXd::Identity(n, n);
  for (int i = 0; i + 1 < n; ++i) {
    // R ← G·R with G the identity except the 2×2 block at (i, i): only rows i, i+1 change.
    const double c = 1.0 / std::sqrt(double(i + 2));
    const double s = std::sqrt(double(i + 1)) / std::sqrt(double(i + 2));
    const Eigen::RowVectorXd ri = R.row(i), rj = R.row(i + 1);
    R.row(i) = c * ri - s * rj;
    R.row(i + 1) = s * ri + c * rj;
  }
  R.row(0).swap(R.row(n - 1));
  R.col(0).swap(R.col(n - 1));
  return R;
}

Eigen::MatrixXd greedy_step_matrix(const Eigen::MatrixXd& base, const Eigen::MatrixXd& q_prime) {
  const Eigen::Index n = base.rows();
  if (base.cols() != n || q_prime.rows() != n - 1 || q_prime.cols() != n - 1)
    throw Error("greedy rotation", "step matrix: M₀ is " + std::to_string(n) + "×" +
                                       std::to_string(base.cols()) + " but Q' is " +
                                       std::to_string(q_prime.rows()) + "×" +
                                       std::to_string(q_prime.cols()));
  Eigen::MatrixXd M(n, n);
  M.col(0) = base.col(0);
  M.rightCols(n - 1).noalias() = base.rightCols(n - 1) * q_prime;
  return M;
}

Eigen::MatrixXd swapped_step_matrix(const Eigen::MatrixXd& M, int d) {
  Eigen::MatrixXd S = M;
  if (d != 0) {
    S.row(0).swap(S.row(d));
    S.col(0).swap(S.col(d));
  }
  return S;
}

std::vector<double> GreedyTrace::objectives() const {
  std::vector<double> v;
  v.reserve(steps.size());
  for (const GreedyStep& s : steps) v.push_back(s.objective);
  return v;
}

std::vector<int32_t> GreedyTrace::channels() const {
  std::vector<int32_t> v;
  v.reserve(steps.size());
  for (const GreedyStep& s : steps) v.push_back(s.channel);
  return v;
}

Eigen::MatrixXd GreedyTrace::step_matrix() const {
  return greedy_step_matrix(duquant_base_matrix(block_size), q_prime);
}

Eigen::MatrixXd GreedyTrace::matrix_at_step(int k) const {
  if (k < 0 || k > max_steps())
    throw Error("greedy trace",
                "step " + std::to_string(k) + " outside 0.." + std::to_string(max_steps()));
  const Eigen::MatrixXd M = step_matrix();
  Eigen::MatrixXd R = Eigen::MatrixXd::Identity(block_size, block_size);
  for (int t = 0; t < k; ++t) {
    const Eigen::MatrixXd next = R * swapped_step_matrix(M, steps[size_t(t)].channel);
    R = next;
  }
  return R;
}

Eigen::MatrixXf GreedyTrace::rotation() const {
  return matrix_at_step(best_step).cast<float>();
}

}  // namespace mxlens
