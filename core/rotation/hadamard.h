#pragma once
// Hadamard matrices (algorithm.md §5.3, §5.5): Sylvester H_{2^p}, Paley constructions of the
// orders 12, 20 (Paley I, q = 11, 19) and 28 (Paley II, q = 13), Kronecker products
// H_m ⊗ H_{2^p} for QuaRot's full-size rotations, and the fast Walsh–Hadamard transform.
// All matrices here are unnormalized ±1 (H Hᵀ = n I) unless the name says "normalized".
#include <cstdint>

#include <Eigen/Core>

namespace mxlens {

// Sylvester: H_1 = [1], H_{2n} = [[H, H], [H, −H]]. n must be a power of two ≥ 1, else Error.
Eigen::MatrixXd sylvester_hadamard(int n);

// The known Hadamard matrix of order m ∈ {1, 2, 4, 12, 20, 28} (±1 entries, H Hᵀ = m I);
// 12 and 20 by Paley I (q = 11, 19), 28 by Paley II (q = 13). Other m: Error.
Eigen::MatrixXd known_hadamard(int m);

// n = m · 2^p with m ∈ {1, 12, 20, 28}: writes m and 2^p and returns true; else false.
bool full_hadamard_factor(int n, int* m, int* power_of_two);
bool full_hadamard_supported(int n);
// Throws Error("full Hadamard", "full Hadamard of size N unsupported (...)") when
// !full_hadamard_supported(n).
void check_full_hadamard_size(int n);

// H_m ⊗ H_{2^p} (unnormalized, n×n). Only for tests and views: n² doubles.
Eigen::MatrixXd full_hadamard_matrix(int n);

// In-place unnormalized fast Walsh–Hadamard transform of one vector of length n (a power of
// two): x ← x·H_n (H_n symmetric, so also H_n·x).
void fwht(float* x, int n);
void fwht(double* x, int n);

}  // namespace mxlens
