"""Tiny random-weight transformers models built from configs (no hub access),
shared by test_transformers.py and test_torch_compile_backend.py. All have
hidden 64, 2 layers, 4 query heads over 2 KV heads of head_dim 16 (DeepSeek-V3:
4 heads of MLA, head dims 24 and 8), so the models share attncc kernels
wherever their attention structure agrees."""
from __future__ import annotations

import torch

VOCAB = 128
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              max_position_embeddings=64)
WINDOW = 4


def _configs():
    import transformers as T
    out = {
        "llama": lambda: (T.LlamaConfig(**COMMON), T.LlamaForCausalLM),
        # layer 0 full attention, layer 1 sliding
        "qwen2": lambda: (T.Qwen2Config(**COMMON, use_sliding_window=True, sliding_window=WINDOW,
                                        max_window_layers=1), T.Qwen2ForCausalLM),
        "mistral": lambda: (T.MistralConfig(**COMMON, sliding_window=WINDOW),
                            T.MistralForCausalLM),
        "gemma2": lambda: (T.Gemma2Config(**COMMON, sliding_window=WINDOW, query_pre_attn_scalar=16,
                                          attn_logit_softcapping=5.0,
                                          final_logit_softcapping=None), T.Gemma2ForCausalLM),
        "gpt_oss": lambda: (T.GptOssConfig(**COMMON, sliding_window=WINDOW, num_local_experts=2,
                                           num_experts_per_tok=1), T.GptOssForCausalLM),
        # MLA (multi-head latent attention) as transformers computes it: per-head
        # K of qk_nope + qk_rope = 24 elements from the latent, V of 8 (head dims
        # differ), 4 KV heads; layer 1 is MoE.
        "deepseek_v3": lambda: (T.DeepseekV3Config(
            **{**COMMON, "num_key_value_heads": 4, "head_dim": 8}, moe_intermediate_size=32,
            q_lora_rank=32,
            kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=8,
            n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
            first_k_dense_replace=1), T.DeepseekV3ForCausalLM),
    }
    return {k: v for k, v in out.items() if hasattr(T, {"llama": "LlamaConfig",
            "qwen2": "Qwen2Config", "mistral": "MistralConfig", "gemma2": "Gemma2Config",
            "gpt_oss": "GptOssConfig", "deepseek_v3": "DeepseekV3Config"}[k])}


def available() -> list[str]:
    return list(_configs())


def tiny(name: str, attn_implementation: str = "eager") -> torch.nn.Module:
    """The model `name` with seeded random weights, in eval mode."""
    torch.manual_seed(0)
    config, cls = _configs()[name]()
    config._attn_implementation = attn_implementation
    model = cls(config).eval()
    if name == "gpt_oss":   # sinks start at zero: give them values that matter
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.sinks.normal_(0.0, 1.0)
    return model


def prompt(batch: int, length: int, pad: int = 0, seed: int = 1):
    """input_ids [batch, length] and an attention_mask with `pad` left-padding
    tokens in row 1 (rows 0 and 2.. unpadded)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[1, :pad] = 0
        ids[1, :pad] = 0
    return ids, mask


def generate(model, impl: str, ids, mask, new_tokens: int):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, output_logits=True,
                              return_dict_in_generate=True, pad_token_id=0)


def max_logit_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.logits, b.logits))
