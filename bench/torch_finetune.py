#!/usr/bin/python3
"""PyTorch CPU peer of cl-finetune for bench/bench-finetune.sh: the same GPT-2-small-sized Llama
(the hand-written float64 reference of tests/torch/gen_model_fixtures.py, run in float32), the
same batch shape and loss tokens, one optimizer step as cl-finetune takes it:
  sft: full fine-tuning, token-mean CE on the loss tokens, clip 1.0, AdamW
  dpo: LoRA r 32 alpha 16 on all seven projections, sigmoid DPO (beta 0.1) against reference
       log-probs computed once up front with the adapters off, clip 1.0, AdamW
Like cl-finetune, the vocabulary projection runs only at loss positions (TRL's logits_to_keep).
Usage: torch_finetune.py sft|dpo ROWS T LOSS_FROM STEPS THREADS
  ROWS sequences of T tokens (dpo: ROWS/2 pairs, chosen and rejected alternate); tokens at
  positions >= LOSS_FROM are predicted.
Prints: mode torch rows T median-seconds-per-step tokens-per-second median-cpu-seconds-per-step final-loss"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch_peer  # noqa: E402

mode, R, T, loss_from, steps, threads = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(threads)
gen = torch.Generator().manual_seed(1)
m = torch_peer.model(torch_peer.PROJ if mode == "dpo" else [], gen)
if mode == "dpo":
    for p in m.p.values():
        p.requires_grad_(False)
    for n, p in m.lora.items():
        if "lora_B" in n:
            p.data.zero_()
    params = list(m.lora.values())
else:
    m.lora_on = False
    params = list(m.p.values())
opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
ids = torch.randint(0, 32000, (R, T), generator=gen)
pos = torch.arange(T).repeat(R, 1)
seg = torch.zeros(R, T, dtype=torch.long)
mask = torch.zeros(R, T, dtype=torch.bool)
mask[:, loss_from - 1:T - 1] = True          # position i predicts token i + 1
targets = torch.roll(ids, -1, 1)
head = m.p.get("lm_head.weight", m.p["model.embed_tokens.weight"])


def seq_logps():
    h = m.hidden(ids, pos, seg)[mask]         # only the rows that carry a loss
    assert h.dtype == torch.float32
    lp = (h @ head.T).log_softmax(-1).gather(-1, targets[mask][:, None])[:, 0]
    per = torch.zeros(R, dtype=lp.dtype).index_add(0, mask.nonzero()[:, 0], lp)
    return lp, per


if mode == "dpo":
    with torch.no_grad():
        m.lora_on = False
        ref_lp = seq_logps()[1]
        m.lora_on = True
times, cpu = [], []
loss = None
for step in range(steps + 1):
    t0, c0 = time.perf_counter(), time.process_time()
    opt.zero_grad()
    lp, per = seq_logps()
    if mode == "sft":
        loss = -lp.sum() / mask.sum()
    else:
        z = (per[0::2] - per[1::2]) - (ref_lp[0::2] - ref_lp[1::2])
        loss = -torch.nn.functional.logsigmoid(0.1 * z).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
med = sorted(times[1:])[len(times[1:]) // 2]
cmed = sorted(cpu[1:])[len(cpu[1:]) // 2]
print(f"{mode} torch {R} {T} {med:.3f} {R * T / med:.1f} {cmed:.3f} {loss.item():.4f}")
