#include "core/model/forward_ref.h"

#include <cmath>
#include <string>

#include "core/model/llama_config.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using Vec = std::vector<float>;

Vec read_all(const Checkpoint& ckpt, const std::string& name) {
  const TensorRef t = ckpt.tensor(name);
  uint64_t n = 1;
  for (uint64_t s : t.shape) n *= s;
  Vec v(static_cast<size_t>(n));
  ckpt.read_f32(name, v);
  return v;
}

// out[o] = Σ_i w[o, i] · x[i] (+ b[o]), W row-major [out, in].
void matvec(const Vec& w, const Vec* b, const float* x, int in, int out, float* y) {
  for (int o = 0; o < out; ++o) {
    double acc = b ? (*b)[size_t(o)] : 0.0;
    for (int i = 0; i < in; ++i) acc += double(w[size_t(o) * size_t(in) + size_t(i)]) * x[i];
    y[o] = float(acc);
  }
}

void rmsnorm(const float* x, const Vec& w, double eps, int n, float* y) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / n + eps);
  for (int i = 0; i < n; ++i) y[i] = float(x[i] * inv) * w[size_t(i)];
}

// Rotate-half RoPE on one head vector of size D at position p.
void rope(float* x, int D, int64_t p, const std::vector<double>& inv_freq) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    const double a = double(p) * inv_freq[size_t(i)];
    const double x1 = x[i], x2 = x[i + half];
    x[i] = float(x1 * std::cos(a) - x2 * std::sin(a));
    x[i + half] = float(x2 * std::cos(a) + x1 * std::sin(a));
  }
}

void tap(SiteTaps* taps, int layer, Site site, Vec& x) {
  if (!taps) return;
  Eigen::Map<RowMatrixXf> row(x.data(), 1, Eigen::Index(x.size()));
  taps->on_activations(layer, site, row);
}

struct RefLayer {
  Vec input_norm, post_norm, q, k, v, o, gate, up, down, qb, kb, vb, ob;
};

}  // namespace

std::vector<float> forward_ref(const Checkpoint& ckpt, std::span<const int32_t> tokens,
                               SiteTaps* taps) {
  const LlamaConfig& c = ckpt.config();
  const int d = c.hidden_size, f = c.intermediate_size, H = c.num_heads, D = c.head_dim;
  const int Hkv = c.num_kv_heads, hd = H * D, kvd = Hkv * D, V = c.vocab_size;
  const int T = int(tokens.size());
  const std::vector<double> inv_freq = rope_inv_freq(c);

  // Weights, all FP32, taps' weight overrides applied once per layer and linear.
  std::vector<RefLayer> L(size_t(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    auto name = [&](const char* s) { return layer_tensor_name(l, s); };
    auto opt = [&](const char* s) { return ckpt.has(name(s)) ? read_all(ckpt, name(s)) : Vec{}; };
    RefLayer& w = L[size_t(l)];
    w.input_norm = read_all(ckpt, name("input_layernorm.weight"));
    w.post_norm = read_all(ckpt, name("post_attention_layernorm.weight"));
    const std::pair<Vec*, Linear> linears[] = {
        {&w.q, Linear::Q},       {&w.k, Linear::K},   {&w.v, Linear::V},      {&w.o, Linear::O},
        {&w.gate, Linear::Gate}, {&w.up, Linear::Up}, {&w.down, Linear::Down}};
    for (auto [m, which] : linears) {
      const std::string prefix = which <= Linear::O ? "self_attn." : "mlp.";
      *m = read_all(ckpt, name((prefix + std::string(linear_name(which)) + ".weight").c_str()));
      const int out = which == Linear::Q                            ? hd
                      : which == Linear::K || which == Linear::V    ? kvd
                      : which == Linear::O || which == Linear::Down ? d
                                                                    : f;
      if (taps)
        if (const float* r = taps->weight_override(l, which, *m, out, int(m->size()) / out))
          m->assign(r, r + m->size());
    }
    w.qb = opt("self_attn.q_proj.bias");
    w.kb = opt("self_attn.k_proj.bias");
    w.vb = opt("self_attn.v_proj.bias");
    w.ob = opt("self_attn.o_proj.bias");
  }
  const Vec emb = read_all(ckpt, ckpt.embedding_name());
  const Vec head = read_all(ckpt, ckpt.lm_head_name());
  const Vec final_norm = read_all(ckpt, "model.norm.weight");
  auto bias = [](const Vec& b) { return b.empty() ? nullptr : &b; };

  // KV cache [layer][pos · kvd + ·].
  std::vector<Vec> kcache(size_t(c.num_layers), Vec(size_t(T) * kvd));
  std::vector<Vec> vcache(size_t(c.num_layers), Vec(size_t(T) * kvd));
  std::vector<float> logits(size_t(T) * V);
  Vec x(d), n(d), q(hd), att(hd), tmp(d), g(f), u(f), gamma_buf;
  // A tap may replace a norm's γ (smoothing folded into it).
  auto norm_weight = [&](int l, Site s, const Vec& gw) -> const Vec& {
    const float* r = taps ? taps->norm_override(l, s, {gw.data(), gw.size()}) : nullptr;
    if (!r) return gw;
    gamma_buf.assign(r, r + gw.size());
    return gamma_buf;
  };
  std::vector<double> score(static_cast<size_t>(T));

  for (int p = 0; p < T; ++p) {
    const int32_t id = tokens[size_t(p)];
    if (id < 0 || id >= V) throw Error("token ids", "id " + std::to_string(id) + " out of range");
    for (int i = 0; i < d; ++i) x[size_t(i)] = emb[size_t(id) * d + size_t(i)];

    for (int l = 0; l < c.num_layers; ++l) {
      const RefLayer& w = L[size_t(l)];
      float* kc = kcache[size_t(l)].data() + size_t(p) * kvd;
      float* vc = vcache[size_t(l)].data() + size_t(p) * kvd;
      rmsnorm(x.data(), norm_weight(l, Site::Qkv, w.input_norm), c.rms_norm_eps, d, n.data());
      tap(taps, l, Site::Qkv, n);
      matvec(w.q, bias(w.qb), n.data(), d, hd, q.data());
      matvec(w.k, bias(w.kb), n.data(), d, kvd, kc);
      matvec(w.v, bias(w.vb), n.data(), d, kvd, vc);
      for (int h = 0; h < H; ++h) rope(q.data() + h * D, D, p, inv_freq);
      for (int h = 0; h < Hkv; ++h) rope(kc + h * D, D, p, inv_freq);

      // Causal attention of this position over positions 0..p, per query head.
      for (int h = 0; h < H; ++h) {
        const int kv = h / c.kv_group();
        double mx = -INFINITY;
        for (int s = 0; s <= p; ++s) {
          const float* ks = kcache[size_t(l)].data() + size_t(s) * kvd + kv * D;
          double dot = 0;
          for (int i = 0; i < D; ++i) dot += double(q[size_t(h * D + i)]) * ks[i];
          score[size_t(s)] = dot / std::sqrt(double(D));
          mx = std::max(mx, score[size_t(s)]);
        }
        double sum = 0;
        for (int s = 0; s <= p; ++s) sum += (score[size_t(s)] = std::exp(score[size_t(s)] - mx));
        for (int i = 0; i < D; ++i) {
          double acc = 0;
          for (int s = 0; s <= p; ++s)
            acc += score[size_t(s)] * vcache[size_t(l)][size_t(s) * kvd + size_t(kv * D + i)];
          att[size_t(h * D + i)] = float(acc / sum);
        }
      }
      tap(taps, l, Site::O, att);
      matvec(w.o, bias(w.ob), att.data(), hd, d, tmp.data());
      for (int i = 0; i < d; ++i) x[size_t(i)] += tmp[size_t(i)];

      rmsnorm(x.data(), norm_weight(l, Site::GateUp, w.post_norm), c.rms_norm_eps, d, n.data());
      tap(taps, l, Site::GateUp, n);
      matvec(w.gate, nullptr, n.data(), d, f, g.data());
      matvec(w.up, nullptr, n.data(), d, f, u.data());
      for (int i = 0; i < f; ++i) {
        const double gi = g[size_t(i)];
        g[size_t(i)] = float(gi / (1.0 + std::exp(-gi)) * u[size_t(i)]);  // silu(gate) ⊙ up
      }
      tap(taps, l, Site::Down, g);
      matvec(w.down, nullptr, g.data(), f, d, tmp.data());
      for (int i = 0; i < d; ++i) x[size_t(i)] += tmp[size_t(i)];
    }
    rmsnorm(x.data(), final_norm, c.rms_norm_eps, d, n.data());
    matvec(head, nullptr, n.data(), d, V, logits.data() + size_t(p) * V);
  }
  return logits;
}

}  // namespace mxlens
