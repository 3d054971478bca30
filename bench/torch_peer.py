"""Shared by the PyTorch peers of bench/: the GPT-2-small-sized Llama both sides time, built
from the hand-written reference model of tests/torch/gen_model_fixtures.py, run in float32."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "torch"))
import gen_model_fixtures as ref  # noqa: E402
import torch  # noqa: E402

CONFIG = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
          "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12, "head_dim": 64,
          "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
PROJ = ref.PROJ


def model(lora_targets, gen):
    """The model with LoRA r 32, alpha 16 on lora_targets, weights N(0, 0.02) from gen."""
    torch.set_default_dtype(torch.float32)
    lora = {"rank": 32, "alpha": 16.0, "rslora": False, "targets": lora_targets}
    m = ref.Model(CONFIG, 1, lora,
                  init=lambda name, shape, seed: (torch.randn(shape, generator=gen) * 0.02).requires_grad_(True))

    def rope32(x, pos):
        # the reference rotates in float64 (its inv_freq and angles are float64), which would
        # turn every attention product after it into float64: keep the peer in float32 like cl
        ang = pos[..., None].to(x.dtype) * m.inv_freq.to(x.dtype)
        cos, sin = ang.cos()[:, :, None, :], ang.sin()[:, :, None, :]
        h = x.shape[-1] // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    m.rope = rope32
    return m
