"""Independent numpy reference implementation of SmolLM2-135M-Instruct (GGUF, llama arch).

This is a from-scratch Python/numpy re-implementation written only from the GGUF file
format and the public llama architecture description; it is NOT derived from the Rust
inference engine it is used to check. It reads the GGUF with `gguf.GGUFReader`,
dequantizes every tensor once with `gguf.quants.dequantize`, and runs the forward pass
in float64 with a KV cache:

  x = token_embd[ids]
  per block:  h = x + Wo @ attn(RoPE(Wq @ rms(x)), RoPE(Wk @ rms(x)), Wv @ rms(x))
              x = h + Wdown @ (silu(Wgate @ rms(h)) * (Wup @ rms(h)))
  logits = token_embd @ rms(x)          (output layer tied to the embedding)

RoPE is llama.cpp "normal" mode (adjacent pairs (x[2i], x[2i+1]) rotated by
pos * base^(-2i/head_dim)); GQA maps query head h to KV head h // (n_head // n_kv_head);
attention is causal with scale 1/sqrt(head_dim). The prompt is produced by rendering
the GGUF's `tokenizer.chat_template` with jinja2 and tokenized by a `tokenizers` BPE
built from the GGUF vocabulary/merges. Decoding is greedy (argmax, ties -> lowest id).

Usage: python3 smollm2_ref.py --gguf MODEL.gguf --cases CASES.json --out OUT.json
CASES.json: [{"messages": [{"role": ..., "content": ...}], "max_tokens": N}, ...]
"""
import argparse, json, sys, time

import jinja2
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

EOS_ID = 2


def field(reader, key):
    return reader.fields[key].contents()


def build_tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])  # 3 = CONTROL
    return tok


class Model:
    def __init__(self, reader):
        g = lambda k: field(reader, "llama." + k)
        self.n_layer, self.n_head, self.n_kv = g("block_count"), g("attention.head_count"), g("attention.head_count_kv")
        self.d = g("embedding_length")
        self.hd = self.d // self.n_head
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base"))
        # Dequantize once; GGUF shape [ne0, ne1] -> numpy (ne1, ne0), i.e. (out, in) for y = W @ x.
        self.w = {t.name: dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
                  .astype(np.float64) for t in reader.tensors}
        self.inv_freq = self.base ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x: (T, heads, hd); rotate adjacent pairs
        ang = pos[:, None] * self.inv_freq[None, :]  # (T, hd/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, ids, cache):
        """ids: new tokens; cache: list of per-layer (K, V) arrays (grown in place). Returns logits (T, vocab)."""
        w, T, hd = self.w, len(ids), self.hd
        p0 = cache[0][0].shape[0] if cache else 0
        pos = np.arange(p0, p0 + T, dtype=np.float64)
        x = w["token_embd.weight"][ids]  # (T, d)
        group = self.n_head // self.n_kv
        for L in range(self.n_layer):
            b = f"blk.{L}."
            h = self.rms(x, w[b + "attn_norm.weight"])
            q = self.rope((h @ w[b + "attn_q.weight"].T).reshape(T, self.n_head, hd), pos)
            k = self.rope((h @ w[b + "attn_k.weight"].T).reshape(T, self.n_kv, hd), pos)
            v = (h @ w[b + "attn_v.weight"].T).reshape(T, self.n_kv, hd)
            if len(cache) <= L:
                cache.append((k, v))
            else:
                cache[L] = (np.concatenate([cache[L][0], k]), np.concatenate([cache[L][1], v]))
            K, V = cache[L]  # (S, n_kv, hd)
            S = K.shape[0]
            kv_idx = np.arange(self.n_head) // group  # query head h reads KV head h // group
            Kh, Vh = K[:, kv_idx].transpose(1, 0, 2), V[:, kv_idx].transpose(1, 0, 2)  # (H, S, hd)
            scores = q.transpose(1, 0, 2) @ Kh.transpose(0, 2, 1) / np.sqrt(hd)  # (H, T, S)
            mask = np.arange(S)[None, :] > (p0 + np.arange(T))[:, None]  # causal
            scores = np.where(mask[None], -np.inf, scores)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            att = (scores @ Vh).transpose(1, 0, 2).reshape(T, self.d)
            x = x + att @ w[b + "attn_output.weight"].T
            h = self.rms(x, w[b + "ffn_norm.weight"])
            gate, up = h @ w[b + "ffn_gate.weight"].T, h @ w[b + "ffn_up.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[b + "ffn_down.weight"].T
        return self.rms(x, w["output_norm.weight"]) @ w["token_embd.weight"].T


def run_case(model, tok, template, case):
    t0 = time.time()
    prompt = template.render(messages=case["messages"], add_generation_prompt=True)
    prompt_ids = tok.encode(prompt, add_special_tokens=False).ids
    cache, out = [], []
    logits = model.forward(np.array(prompt_ids), cache)[-1]
    first_logits = [round(float(v), 6) for v in logits]
    while len(out) < case["max_tokens"]:
        nxt = int(np.argmax(logits))  # np.argmax returns the lowest index on ties
        out.append(nxt)
        if nxt == EOS_ID or len(out) >= case["max_tokens"]:
            break
        logits = model.forward(np.array([nxt]), cache)[-1]
    return {"prompt_ids": prompt_ids, "token_ids": out,
            "text": tok.decode(out, skip_special_tokens=True),
            "first_logits": first_logits, "seconds": round(time.time() - t0, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    reader = GGUFReader(args.gguf)
    tok = build_tokenizer(reader)
    template = jinja2.Environment().from_string(field(reader, "tokenizer.chat_template"))
    model = Model(reader)
    with open(args.cases) as f:
        cases = json.load(f)
    results = []
    for i, case in enumerate(cases):
        r = run_case(model, tok, template, case)
        results.append(r)
        print(f"case {i + 1}/{len(cases)}: {len(r['prompt_ids'])} prompt + {len(r['token_ids'])} generated "
              f"tokens in {r['seconds']:.2f}s: {r['text']!r}", file=sys.stderr, flush=True)
    with open(args.out, "w") as f:
        json.dump({"cases": results}, f)


if __name__ == "__main__":
    main()
