"""Run by test_vllm.py in a fresh process (vLLM spawns its engine and
workers): greedy generation on a local model, token ids in and out.

    python vllm_generate.py MODEL_DIR TP OUT_JSON [KV_CACHE_DTYPE]
"""
import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

PROMPTS = [[1, 5, 9, 13, 17], [3, 4, 200, 7, 8, 9, 10, 11, 12, 40, 41], [250, 2]]


def main() -> None:
    from vllm import LLM, SamplingParams
    model, tp, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kv_cache_dtype = sys.argv[4] if len(sys.argv) > 4 else "auto"
    llm = LLM(model=model, skip_tokenizer_init=True, dtype="float32", enforce_eager=True,
              max_model_len=128, max_num_seqs=4, block_size=32, tensor_parallel_size=tp,
              kv_cache_dtype=kv_cache_dtype,
              distributed_executor_backend="mp" if tp > 1 else None)
    params = SamplingParams(max_tokens=12, temperature=0.0, detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params)
    with open(out, "w") as f:
        json.dump([list(o.outputs[0].token_ids) for o in outs], f)


if __name__ == "__main__":
    main()
