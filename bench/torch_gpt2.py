"""The reference for bench/device-check.sh: a GPT-2-small-shaped model (random weights, the same shape
spikelm's scale suite generates) in PyTorch eager on this machine's GPU (or CPU), timed the same
way: prefill 128 tokens, then decode tokens/s with a KV cache after a 32-token prompt.

Plain torch only (no transformers), so it runs wherever `import torch` works. Prints one JSON line.
"""
import json
import math
import sys
import time

import torch

L, D, H, V, P = 12, 768, 12, 50257, 1024


def build(device):
    g = torch.Generator().manual_seed(0)
    def n(*shape, std=0.02):
        return (torch.randn(*shape, generator=g) * std).to(device)
    w = {"wte": n(V, D), "wpe": n(P, D), "lnf": (torch.ones(D, device=device), torch.zeros(D, device=device)), "blocks": []}
    for _ in range(L):
        w["blocks"].append({
            "ln1": (torch.ones(D, device=device), torch.zeros(D, device=device)),
            "qkv": (n(3 * D, D), torch.zeros(3 * D, device=device)),
            "o": (n(D, D, std=0.02 / math.sqrt(2 * L)), torch.zeros(D, device=device)),
            "ln2": (torch.ones(D, device=device), torch.zeros(D, device=device)),
            "fc": (n(4 * D, D), torch.zeros(4 * D, device=device)),
            "proj": (n(D, 4 * D, std=0.02 / math.sqrt(2 * L)), torch.zeros(D, device=device)),
        })
    return w


def forward(w, ids, cache, start):
    F = torch.nn.functional
    S = ids.shape[0]
    x = w["wte"][ids] + w["wpe"][start:start + S]
    for l, b in enumerate(w["blocks"]):
        h = F.layer_norm(x, (D,), *b["ln1"], eps=1e-5)
        q, k, v = F.linear(h, *b["qkv"]).split(D, dim=-1)
        k_all = torch.cat([cache[l][0], k]) if cache[l] is not None else k
        v_all = torch.cat([cache[l][1], v]) if cache[l] is not None else v
        cache[l] = (k_all, v_all)
        qh = q.view(S, H, D // H).transpose(0, 1)
        kh = k_all.view(-1, H, D // H).transpose(0, 1)
        vh = v_all.view(-1, H, D // H).transpose(0, 1)
        att = F.scaled_dot_product_attention(qh, kh, vh, is_causal=(S > 1 and start == 0))
        x = x + F.linear(att.transpose(0, 1).reshape(S, D), *b["o"])
        h = F.layer_norm(x, (D,), *b["ln2"], eps=1e-5)
        x = x + F.linear(F.gelu(F.linear(h, *b["fc"]), approximate="tanh"), *b["proj"])
    return F.linear(F.layer_norm(x[-1:], (D,), *w["lnf"], eps=1e-5), w["wte"])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def main():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    w = build(device)
    ids = torch.tensor([(i * 37 + 11) % V for i in range(128)], device=device)
    for _ in range(2):  # warm-up
        forward(w, ids, [None] * L, 0)
    sync(device)
    t0 = time.perf_counter()
    forward(w, ids, [None] * L, 0)
    sync(device)
    prefill = 128 / (time.perf_counter() - t0)
    rates = []
    for _ in range(3):
        cache = [None] * L
        logits = forward(w, ids[:32], cache, 0)
        sync(device)
        n = 32
        t0 = time.perf_counter()
        for i in range(n):
            nxt = logits.argmax(-1)
            logits = forward(w, nxt, cache, 32 + i)
        sync(device)
        rates.append(n / (time.perf_counter() - t0))
    rates.sort()
    print(json.dumps({"engine": f"pytorch {torch.__version__} eager", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                      "prefill_128_tokens_per_s": prefill, "decode_tokens_per_s": rates[1]}))


if __name__ == "__main__":
    sys.exit(main())
