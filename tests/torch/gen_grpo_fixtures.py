#!/usr/bin/python3
"""GRPO reference values for lib/model/loss.c (cl_grpo_loss) and lib/train/grpo.c, from the
float64 PyTorch model of gen_model_fixtures.py, written from verl's formulas
(compute_grpo_outcome_advantage, compute_policy_loss with dual clip, low_var_kl, token-mean).

Usage: /usr/bin/python3 tests/torch/gen_grpo_fixtures.py [OUTDIR]   (default tests/data/model)
Writes grpo-llama.fx and grpo-qwen2.fx: the model and batch records of gen_model_fixtures.py
(same layout), then grpo_* records.  The batch's four rows are one group of four replies.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixtures as g  # noqa: E402

REWARDS = [1.0, 0.0, 0.5, 0.25]
KL_COEF, CLIP, CLIP_C, EPS = 0.1, 0.2, 3.0, 1e-6
# old log-prob = policy log-prob + shift: ratios exp(-shift) land unclipped, clipped on either
# side, and past the dual clip (exp(1.3) > 3) for the negative advantages
SHIFTS = [0.5, -0.5, 0.1, 0.0, -1.3]


def grpo_loss(lp, old, ref, adv, mask):
    a = adv[:, None]
    ratio = torch.exp(torch.clamp(lp - old, -20.0, 20.0))
    l1 = -a * ratio
    l2 = -a * torch.clamp(ratio, 1 - CLIP, 1 + CLIP)
    pg = torch.maximum(l1, l2)
    pg = torch.where(a < 0, torch.minimum(-a * CLIP_C, pg), pg)
    x = ref - lp
    kl = torch.clamp(torch.exp(x) - x - 1, -10, 10)
    n = mask.sum()
    return ((pg + KL_COEF * kl) * mask).sum() / n, (pg * mask).sum() / n, (kl * mask).sum() / n


def build(cfg, lora, seed, out):
    w, data = g.start(cfg, lora, seed)
    targets = data[3]
    B, T = targets.shape
    mask = (targets >= 0).to(torch.float64)
    m = g.Model(cfg, seed, lora)
    r = torch.tensor(REWARDS)
    adv = (r - r.mean()) / (r.std() + EPS)          # torch.std: the sample std, as verl
    with torch.no_grad():
        m.lora_on = False
        ref = m.token_logps(*data)
        m.lora_on = True
        pol0 = m.token_logps(*data)
    shift = torch.tensor([SHIFTS[i % len(SHIFTS)] for i in range(B * T)]).reshape(B, T)
    old = (pol0 + shift).to(torch.float32).to(torch.float64) * mask
    lp = m.token_logps(*data)
    loss, pg, kl = grpo_loss(lp, old, ref, adv, mask)
    loss.backward()
    w.add("grpo_rewards", "d", REWARDS)
    w.add("grpo_adv", "d", adv)
    w.add("grpo_old", "f", old)
    w.add("grpo_ref", "d", ref)
    w.add("grpo_loss", "d", [loss.item()])
    w.add("grpo_pg", "d", [pg.item()])
    w.add("grpo_kl", "d", [kl.item()])
    for n, p in m.lora.items():
        w.add("grpo_grad:" + n, "f", p.grad)
    w.save(out)


if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/data/model"
    os.makedirs(outdir, exist_ok=True)
    build(dict(g.LLAMA), {"rank": 4, "alpha": 8.0, "rslora": False, "targets": g.PROJ}, 7,
          os.path.join(outdir, "grpo-llama.fx"))
    build(dict(g.QWEN2), {"rank": 3, "alpha": 4.0, "rslora": True,
                          "targets": ["q_proj", "v_proj", "o_proj", "down_proj"]}, 11,
          os.path.join(outdir, "grpo-qwen2.fx"))
