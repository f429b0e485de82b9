// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/duquant.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/util/error.h"

namespace mxlens {

int zigzag_bucket(int64_t i, int buckets) {
  const int64_t period = 2 * int64_t(buckets);
  const int64_t r = i % period;
  return int(r < buckets ? r : period - 1 - r);
}

std::vector<int32_t> zigzag_permutation(std::span<const float> channel_max, int bucket_size) {
  const int64_t C = int64_t(channel_max.size());
  if (bucket_size <= 0 || C == 0 || C % bucket_size != 0)
    throw Error("zigzag permutation", std::to_string(C) +
                                          " channels are not a multiple of the bucket size " +
                                          std::to_string(bucket_size));
  const int K = int(C / bucket_size);
  std::vector<int32_t> order(size_t(C), 0);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return channel_max[size_t(a)] > channel_max[size_t(b)];
  });
  std::vector<std::vector<int32_t>> buckets(static_cast<size_t>(K));
  for (int64_t i = 0; i < C; ++i) buckets[size_t(zigzag_bucket(i, K))].push_back(order[size_t(i)]);
  std::vector<int32_t> perm;
  perm.reserve(size_t(C));
  for (auto& bucket : buckets) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
      return channel_max[size_t(a)] > channel_max[size_t(b)];
    });
    perm.insert(perm.end(), bucket.begin(), bucket.end());
  }
  return perm;
}

DuQuantResult duquant_transform(Eigen::Ref<const RowMatrixXf> x, const DuQuantOptions& options,
                                const Progress* progress) {
  const int n = options.block_size;
  if (n < 2 || x.cols() % n != 0)
    throw Error("DuQuant", std::to_string(x.cols()) +
                               " channels are not a multiple of the DuQuant block size " +
                               std::to_string(n));
  GreedyOptions greedy;
  greedy.block_size = n;
  greedy.max_steps = options.max_steps;
  greedy.selection = options.selection;
  greedy.objective = options.objective;
  greedy.seed = options.seed;
  greedy.layer = options.layer;
  greedy.site = options.site;
  greedy.threads = options.threads;

  DuQuantResult result;
  greedy.stage = 1;
  GreedyResult first = greedy_search(x, greedy, progress);
  RowMatrixXf y = x;
  first.rotation.transform().apply_rows(y, options.threads);

  std::vector<float> channel_max(size_t(y.cols()));
  for (Eigen::Index c = 0; c < y.cols(); ++c)
    channel_max[size_t(c)] = y.col(c).cwiseAbs().maxCoeff();
  result.permutation = zigzag_permutation(channel_max, n);
  ChannelTransform permute;
  permute.add_permutation(result.permutation);
  permute.apply_rows(y, options.threads);

  greedy.stage = 2;
  GreedyResult second = greedy_search(y, greedy, progress);

  result.transform.add_block_rotation(first.rotation.matrix);
  result.transform.add_permutation(result.permutation);
  result.transform.add_block_rotation(second.rotation.matrix);
  result.first = std::move(first.rotation);
  result.second = std::move(second.rotation);
  result.first_trace = std::move(first.trace);
  result.second_trace = std::move(second.trace);
  return result;
}

}  // namespace mxlens
