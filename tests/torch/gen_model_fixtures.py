#!/usr/bin/python3
"""Reference values for the C model core, computed by an independent float64 PyTorch
implementation of the Llama/Qwen2 decoder (rotate-half RoPE, GQA, SwiGLU, RMSNorm, LoRA, DPO).

Usage: /usr/bin/python3 tests/torch/gen_model_fixtures.py [OUTDIR]   (default tests/data/model)
Needs Debian's python3-torch.  Writes llama.fx and qwen2.fx.

Weights are not stored: both sides derive each value from (seed, tensor name, index) with the
hash documented in lib/model/llama.h (cl_llama_init_uniform), rounded to float32 here so both
sides start from identical numbers.

Fixture layout (little-endian): b"CLFX", u32 version (1), u32 record count, then records of
u16 name length, name (UTF-8), u8 type (b'f' f32, b'd' f64, b'i' i32, b's' bytes), u32 element
count, payload.  Tensors are flat row-major.
"""
import json
import math
import os
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)
M64 = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def fnv_seed(name, seed):
    h = 0xCBF29CE484222325 ^ seed
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def uniform_tensor(name, shape, seed):
    s = fnv_seed(name, seed)
    n = 1
    for d in shape:
        n *= d
    us = [(mix64(s ^ mix64(i)) >> 11) * 2.0 ** -53 for i in range(n)]
    if len(shape) == 1:
        vals = [0.2 * (u - 0.5) if name.endswith(".bias") else 1 + 0.2 * (u - 0.5) for u in us]
    else:
        vals = [2 * (u - 0.5) / math.sqrt(shape[1]) for u in us]
    t = torch.tensor(vals, dtype=torch.float32).to(torch.float64).reshape(shape)
    return t.requires_grad_(True)


PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Model:
    def __init__(self, cfg, seed, lora, init=uniform_tensor):
        self.cfg = cfg
        c = cfg
        d = c["hidden_size"]
        hd = c.setdefault("head_dim", d // c["num_attention_heads"])
        qd, kd, inter = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd, c["intermediate_size"]
        qwen = c["model_type"] == "qwen2"
        self.p = {}
        self.lora = {}
        def add(name, shape):
            self.p[name] = init(name, shape, seed)
        add("model.embed_tokens.weight", (c["vocab_size"], d))
        dims = {"q_proj": (qd, d), "k_proj": (kd, d), "v_proj": (kd, d), "o_proj": (d, qd),
                "gate_proj": (inter, d), "up_proj": (inter, d), "down_proj": (d, inter)}
        for l in range(c["num_hidden_layers"]):
            add(f"model.layers.{l}.input_layernorm.weight", (d,))
            add(f"model.layers.{l}.post_attention_layernorm.weight", (d,))
            for pj in PROJ:
                blk = "self_attn" if pj in PROJ[:4] else "mlp"
                add(f"model.layers.{l}.{blk}.{pj}.weight", dims[pj])
                if qwen and pj in PROJ[:3]:
                    add(f"model.layers.{l}.{blk}.{pj}.bias", (dims[pj][0],))
                if pj in lora["targets"]:
                    pre = f"base_model.model.model.layers.{l}.{blk}.{pj}"
                    r = lora["rank"]
                    for ab, shape in (("A", (r, dims[pj][1])), ("B", (dims[pj][0], r))):
                        nm = f"{pre}.lora_{ab}.weight"
                        self.lora[nm] = init(nm, shape, seed)
        add("model.norm.weight", (d,))
        if not c.get("tie_word_embeddings"):
            add("lm_head.weight", (c["vocab_size"], d))
        r = lora["rank"]
        self.scale = lora["alpha"] / (math.sqrt(r) if lora["rslora"] else r)
        self.lora_on = True
        self.inv_freq = self.rope_freqs()

    def rope_freqs(self):
        c = self.cfg
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        rs = c.get("rope_scaling")
        if rs:  # Llama-3.1 remap, written from the HF formulation
            factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], \
                rs["original_max_position_embeddings"]
            wl = 2 * math.pi / inv
            scaled = torch.where(wl > old / lo, inv / factor, inv)
            smooth = (old / wl - lo) / (hi - lo)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wl < old / hi) & ~(wl > old / lo)
            inv = torch.where(medium, smoothed, scaled)
        return inv

    def linear(self, x, l, pj):
        blk = "self_attn" if pj in PROJ[:4] else "mlp"
        name = f"model.layers.{l}.{blk}.{pj}"
        y = x @ self.p[name + ".weight"].T
        if name + ".bias" in self.p:
            y = y + self.p[name + ".bias"]
        pre = "base_model.model." + name
        if self.lora_on and pre + ".lora_A.weight" in self.lora:
            y = y + self.scale * (x @ self.lora[pre + ".lora_A.weight"].T) @ self.lora[pre + ".lora_B.weight"].T
        return y

    def rms(self, x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"]) * w

    def rope(self, x, pos):  # x [B, T, H, hd]
        ang = pos[..., None].to(torch.float64) * self.inv_freq  # [B, T, half]
        cos, sin = ang.cos().to(x.dtype)[:, :, None, :], ang.sin().to(x.dtype)[:, :, None, :]
        h = x.shape[-1] // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def hidden(self, ids, pos, seg):
        c = self.cfg
        B, T = ids.shape
        H, KV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        x = self.p["model.embed_tokens.weight"][ids]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = causal[None] & (seg[:, :, None] == seg[:, None, :])  # [B, T, T]
        for l in range(c["num_hidden_layers"]):
            h = self.rms(x, self.p[f"model.layers.{l}.input_layernorm.weight"])
            q = self.rope(self.linear(h, l, "q_proj").view(B, T, H, hd), pos)
            k = self.rope(self.linear(h, l, "k_proj").view(B, T, KV, hd), pos)
            v = self.linear(h, l, "v_proj").view(B, T, KV, hd)
            k = k.repeat_interleave(H // KV, dim=2)
            v = v.repeat_interleave(H // KV, dim=2)
            s = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
            s = s.masked_fill(~mask[:, None], float("-inf"))
            a = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, H * hd)
            x = x + self.linear(a, l, "o_proj")
            h = self.rms(x, self.p[f"model.layers.{l}.post_attention_layernorm.weight"])
            g, u = self.linear(h, l, "gate_proj"), self.linear(h, l, "up_proj")
            x = x + self.linear(torch.nn.functional.silu(g) * u, l, "down_proj")
        return self.rms(x, self.p["model.norm.weight"])

    def logits(self, ids, pos, seg):
        w = self.p.get("lm_head.weight", self.p["model.embed_tokens.weight"])
        return self.hidden(ids, pos, seg) @ w.T

    def token_logps(self, ids, pos, seg, targets):
        lg = self.logits(ids, pos, seg).log_softmax(-1)
        t = targets.clamp(min=0)
        return lg.gather(-1, t[..., None])[..., 0] * (targets >= 0)


def log_sigmoid(x):
    return torch.nn.functional.logsigmoid(x)


def dpo_loss(kind, beta, eps, pc, pr, rc, rr):
    z = (pc - pr) - (rc - rr)
    if kind == "sigmoid":
        l = -(1 - eps) * log_sigmoid(beta * z) - eps * log_sigmoid(-beta * z)
    elif kind == "robust":
        l = (-(1 - eps) * log_sigmoid(beta * z) + eps * log_sigmoid(-beta * z)) / (1 - 2 * eps)
    elif kind == "hinge":
        l = torch.relu(1 - beta * z)
    else:
        l = (z - 1 / (2 * beta)) ** 2
    return l.mean()


def lr_at(kind, lr, done, warmup, total):
    if done < warmup:
        return lr * done / warmup
    if kind == "constant":
        return lr
    prog = (done - warmup) / (total - warmup)
    return lr * (1 - prog) if kind == "linear" else lr * 0.5 * (1 + math.cos(math.pi * prog))


def trajectory(model, params, no_decay, data, hp, steps=10):
    groups = [{"params": [params[n] for n in params if n not in no_decay], "weight_decay": hp["wd"]},
              {"params": [params[n] for n in params if n in no_decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"])
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(hp["sched"], hp["lr"], step, hp["warmup"], steps)
        opt.zero_grad()
        lp = model.token_logps(*data)
        loss = -lp.sum() / (data[3] >= 0).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), hp["clip"])
        opt.step()
        losses.append(loss.item())
    return losses


class Writer:
    def __init__(self):
        self.recs = []

    def add(self, name, kind, values):
        if kind == "s":
            payload = values.encode()
            count = len(payload)
        else:
            vals = values.detach().reshape(-1).tolist() if torch.is_tensor(values) else list(values)
            count = len(vals)
            payload = struct.pack("<%d%s" % (count, kind), *vals)
        self.recs.append(struct.pack("<H", len(name)) + name.encode() + kind.encode() +
                         struct.pack("<I", count) + payload)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"CLFX" + struct.pack("<II", 1, len(self.recs)) + b"".join(self.recs))


def start(cfg, lora, seed):
    """A writer holding the model's description and the test batch, and the batch itself
    (also what gen_grpo_fixtures.py starts from)."""
    w = Writer()
    w.add("config", "s", json.dumps(cfg))
    w.add("seed", "i", [seed])
    w.add("lora_rank", "i", [lora["rank"]])
    w.add("lora_alpha", "d", [lora["alpha"]])
    w.add("lora_rslora", "i", [int(lora["rslora"])])
    w.add("lora_targets", "i", [sum(1 << PROJ.index(p) for p in lora["targets"])])
    B, T, V = 4, 9, cfg["vocab_size"]
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=gen)
    pos = torch.arange(T).repeat(B, 1)
    seg = torch.zeros(B, T, dtype=torch.long)
    seg[0, 5:] = 1          # row 0 packs two sequences: positions restart, no attention across
    pos[0, 5:] = torch.arange(T - 5)
    targets = torch.cat([ids[:, 1:], torch.full((B, 1), -1)], 1)
    targets[0, 4] = -1      # no target across the packing boundary
    targets[:, :2] = -1     # prompt tokens carry no loss
    targets[3, 6:] = -1     # a shorter completion
    for n, t in (("ids", ids), ("pos", pos), ("seg", seg), ("targets", targets)):
        w.add(n, "i", t)
    w.add("B", "i", [B])
    w.add("T", "i", [T])
    return w, (ids, pos, seg, targets)


def build(cfg, lora, seed, out):
    w, data = start(cfg, lora, seed)
    ids, pos, seg, targets = data
    B = ids.shape[0]
    m = Model(cfg, seed, lora)
    ntok = (targets >= 0).sum()
    def sft_record(prefix, params):
        w.add(prefix + "logits", "f", m.logits(ids, pos, seg))
        loss = -m.token_logps(*data).sum() / ntok
        loss.backward()
        w.add(prefix + "loss", "d", [loss.item()])
        for n, p in params.items():
            w.add(prefix + "grad:" + n, "f", p.grad)
            p.grad = None

    m.lora_on = False  # base model: full fine-tuning gradients
    sft_record("", m.p)
    m.lora_on = True   # adapters on: adapter gradients (base frozen)
    sft_record("lora_", m.lora)
    for p in m.p.values():
        p.grad = None
    # DPO: rows (0, 1) and (2, 3) are (chosen, rejected) pairs; reference = adapters off
    with torch.no_grad():
        m.lora_on = False
        ref = m.token_logps(*data).sum(1)
        m.lora_on = True
    lens = (targets >= 0).sum(1)
    w.add("dpo_ref", "d", ref)
    for kind in ("sigmoid", "hinge", "ipo", "robust"):
        pol = m.token_logps(*data).sum(1)
        norm = lens.to(torch.float64) if kind == "ipo" else torch.ones(B)
        pl, rf = pol / norm, ref / norm
        loss = dpo_loss(kind, 0.1, 0.1 if kind in ("sigmoid", "robust") else 0.0, pl[0::2], pl[1::2], rf[0::2], rf[1::2])
        w.add("dpo_loss_" + kind, "d", [loss.item()])
        if kind in ("sigmoid", "ipo"):
            loss.backward()
            for n, p in m.lora.items():
                w.add(f"dpo_grad_{kind}:" + n, "f", p.grad)
                p.grad = None
    # 10-step trajectories: full fine-tuning and LoRA
    hp = {"lr": 3e-3, "b1": 0.9, "b2": 0.95, "eps": 1e-8, "wd": 0.1, "clip": 1.0, "sched": "cosine", "warmup": 2}
    m.lora_on = False
    no_decay = {n for n, p in m.p.items() if p.dim() == 1}
    w.add("traj_full", "d", trajectory(m, m.p, no_decay, data, hp))
    m2 = Model(cfg, seed, lora)
    for p in m2.p.values():
        p.requires_grad_(False)
    hp2 = dict(hp, lr=1e-2, wd=0.0, sched="linear", warmup=0, clip=0.5)
    w.add("traj_lora", "d", trajectory(m2, m2.lora, set(), data, hp2))
    w.save(out)


LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
         "vocab_size": 64, "hidden_size": 48, "intermediate_size": 56, "num_hidden_layers": 2,
         "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-5,
         "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": False,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
         "bos_token_id": 1, "eos_token_id": [2, 3]}
QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
         "vocab_size": 80, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
         "rope_theta": 1000000.0, "max_position_embeddings": 64, "tie_word_embeddings": True,
         "eos_token_id": 5}

if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/model"
    os.makedirs(outdir, exist_ok=True)
    build(dict(LLAMA), {"rank": 4, "alpha": 8.0, "rslora": False, "targets": PROJ}, 7, os.path.join(outdir, "llama.fx"))
    cfg = dict(QWEN2)
    build(cfg, {"rank": 3, "alpha": 4.0, "rslora": True, "targets": ["q_proj", "v_proj", "o_proj", "down_proj"]}, 11,
          os.path.join(outdir, "qwen2.fx"))
