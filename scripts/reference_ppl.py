#!/usr/bin/python3
"""Independent perplexity reference for mxlens (algorithm.md §8), numpy only.

Reads a Hugging Face LLaMA-family checkpoint directory with its own safetensors parser (not
mxlens code), runs the forward in float64 over non-overlapping windows of token ids and prints
the perplexity as JSON. Token ids come from a JSON file: a list of ints, or an object with
"ids" (e.g. the output of `mxlens-cli tokenize --json`).

  /usr/bin/python3 scripts/reference_ppl.py MODEL_DIR --ids ids.json --seqlen 256 [--windows 8]
      [--bos-id N]

Protocol: ids are split into floor(N / seqlen) windows, the tail is dropped, no BOS is
inserted per window (--bos-id prepends one BOS to the whole id list, once); in every window,
positions 0..L-2 predict tokens 1..L-1; PPL = exp(mean NLL over all scored tokens).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    data = raw[8 + header_len :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        buf = data[begin:end]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2")
        elif dt == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F64":
            a = np.frombuffer(buf, dtype="<f8")
        else:
            raise SystemExit(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = a.astype(np.float64).reshape(shape)
    return out


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    for s in shards:
        tensors.update(read_safetensors(os.path.join(model_dir, s)))
    return cfg, tensors


def rope_inv_freq(cfg, head_dim):
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    scaling = cfg.get("rope_scaling") or rp
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "llama3":
        factor = scaling["factor"]
        lo, hi = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
        old = scaling.get("original_max_position_embeddings", cfg["max_position_embeddings"])
        low_wl, high_wl = old / lo, old / hi
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < high_wl:
                out.append(f)
            elif wl > low_wl:
                out.append(f / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        inv = np.array(out)
    elif kind == "linear":
        inv = inv / scaling["factor"]
    return inv


class Model:
    def __init__(self, model_dir):
        cfg, t = load_model(model_dir)
        self.cfg = cfg
        self.d = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg.get("num_key_value_heads") or self.H
        self.D = cfg.get("head_dim") or self.d // self.H
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.t = t
        self.emb = t.get("model.embed_tokens.weight", t.get("lm_head.weight"))
        self.head = t.get("lm_head.weight", t.get("model.embed_tokens.weight"))
        self.inv_freq = rope_inv_freq(cfg, self.D)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, T):  # x [T, heads, D], rotate-half
        ang = np.arange(T, dtype=np.float64)[:, None] * self.inv_freq[None, :]
        cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
        half = self.D // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rot * sin

    def logits(self, ids):
        T = len(ids)
        t = self.t
        x = self.emb[np.asarray(ids)]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        group = self.H // self.Hkv
        for l in range(self.L):
            p = f"model.layers.{l}."
            n = self.rmsnorm(x, t[p + "input_layernorm.weight"])
            q = n @ t[p + "self_attn.q_proj.weight"].T
            k = n @ t[p + "self_attn.k_proj.weight"].T
            v = n @ t[p + "self_attn.v_proj.weight"].T
            # Qwen2-style q/k/v biases, when the checkpoint has them.
            q = q + t.get(p + "self_attn.q_proj.bias", 0.0)
            k = k + t.get(p + "self_attn.k_proj.bias", 0.0)
            v = v + t.get(p + "self_attn.v_proj.bias", 0.0)
            q = self.rope(q.reshape(T, self.H, self.D), T)
            k = self.rope(k.reshape(T, self.Hkv, self.D), T)
            v = v.reshape(T, self.Hkv, self.D)
            att = np.empty((T, self.H, self.D))
            for h in range(self.H):
                kv = h // group
                s = q[:, h, :] @ k[:, kv, :].T / math.sqrt(self.D) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att[:, h, :] = s @ v[:, kv, :]
            x = x + att.reshape(T, self.H * self.D) @ t[p + "self_attn.o_proj.weight"].T
            n = self.rmsnorm(x, t[p + "post_attention_layernorm.weight"])
            g = n @ t[p + "mlp.gate_proj.weight"].T
            u = n @ t[p + "mlp.up_proj.weight"].T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ t[p + "mlp.down_proj.weight"].T
        return self.rmsnorm(x, t["model.norm.weight"]) @ self.head.T


def window_nll(model, ids):
    logits = model.logits(ids[:-1])
    mx = logits.max(axis=-1, keepdims=True)
    lse = (mx + np.log(np.exp(logits - mx).sum(axis=-1, keepdims=True)))[:, 0]
    target = np.asarray(ids[1:])
    return float(np.mean(lse - logits[np.arange(len(target)), target]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="JSON file: [ids] or {\"ids\": [...]}")
    ap.add_argument("--seqlen", type=int, required=True)
    ap.add_argument("--windows", type=int, default=0, help="0 = all")
    ap.add_argument("--bos-id", type=int, default=None, help="prepend one BOS to the whole text")
    args = ap.parse_args()
    with open(args.ids) as f:
        data = json.load(f)
    ids = data["ids"] if isinstance(data, dict) else data
    if args.bos_id is not None:
        ids = [args.bos_id] + list(ids)
    L = args.seqlen
    n = len(ids) // L
    if args.windows:
        n = min(n, args.windows)
    if n < 1:
        raise SystemExit(f"{args.ids}: {len(ids)} tokens, shorter than one window of {L}")
    model = Model(args.model_dir)
    nlls = []
    for w in range(n):
        nlls.append(window_nll(model, ids[w * L : (w + 1) * L]))
        print(f"window {w + 1}/{n}: nll {nlls[-1]:.10f}", file=sys.stderr)
    nll = float(np.mean(nlls))
    print(json.dumps({"ppl": math.exp(nll), "nll_mean": nll, "windows": n, "seqlen": L,
                      "tokens_scored": n * (L - 1), "tokens_total": len(ids),
                      "window_nll": nlls}))


if __name__ == "__main__":
    main()
