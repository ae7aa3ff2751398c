"""A tiny random Llama (GQA) generating with attncc inside transformers,
checked against transformers' eager attention.

    python examples/hf_generate.py

No download: the model is built from a config with random weights.
"""
import time

import torch

import attncc
import attncc.integrations.transformers as attncc_hf
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    attncc_hf.register()                     # attn_implementation="attncc"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(1, 128, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0                          # left padding in the second row

    def generate(impl: str):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            return model.generate(ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6,
                                  do_sample=False, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=0)

    ref = generate("eager")
    before = attncc.cache_info()
    start = time.perf_counter()
    out = generate("attncc")
    seconds = time.perf_counter() - start
    diff = max(float((a - b).abs().max()) for a, b in zip(out.logits, ref.logits))
    print("tokens (attncc):", out.sequences[:, ids.shape[1]:].tolist())
    print("tokens (eager): ", ref.sequences[:, ids.shape[1]:].tolist())
    after = attncc.cache_info()
    print(f"attncc kernels compiled: {after['compiled'] - before['compiled']}, loaded from the "
          f"kernel cache: {after['disk_hits'] - before['disk_hits']} (generate took "
          f"{seconds:.1f} s, compiles included)")
    print(f"max |logit difference|: {diff:.2e}")
    ok = torch.equal(out.sequences, ref.sequences) and diff <= 1e-4
    print("check against eager:", "OK" if ok else "FAILED")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
