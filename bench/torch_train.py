#!/usr/bin/python3
"""PyTorch CPU peer of tests/helpers/model-bench-train: the same GPT-2-small-sized Llama
(bench/torch_peer.py: the reference model of tests/torch, in float32), the same
batch, forward + CE + backward + clipping + AdamW, full fine-tuning or LoRA r 32 on all seven
projections.  Usage: torch_train.py full|lora B T STEPS THREADS
Prints: mode torch B T median-seconds-per-step tokens-per-second final-loss median-CPU-seconds-per-step"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_peer  # noqa: E402

mode, B, T, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
gen = torch.Generator().manual_seed(1)
m = torch_peer.model(torch_peer.PROJ if mode == "lora" else [], gen)
if mode == "lora":
    for p in m.p.values():
        p.requires_grad_(False)
    params = list(m.lora.values())
    for n, p in m.lora.items():
        if "lora_B" in n:
            p.data.zero_()
else:
    m.lora_on = False
    params = list(m.p.values())
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
ids = torch.randint(0, 32000, (B, T), generator=gen)
targets = torch.cat([ids[:, 1:], torch.full((B, 1), -1)], 1)
pos = torch.arange(T).repeat(B, 1)
seg = torch.zeros(B, T, dtype=torch.long)
times = []
cpus = []
loss = None
for step in range(steps + 1):
    t0 = time.perf_counter()
    c0 = time.process_time()
    opt.zero_grad()
    lp = m.token_logps(ids, pos, seg, targets)
    loss = -lp.sum() / (targets >= 0).sum()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    times.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
med = sorted(times[1:])[len(times[1:]) // 2]
cmed = sorted(cpus[1:])[len(cpus[1:]) // 2]
print(f"{mode} torch {B} {T} {med:.3f} {B * T / med:.1f} {loss.item():.4f} {cmed:.3f}")
