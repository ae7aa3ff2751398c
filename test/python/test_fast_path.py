"""attncc.attention's fast path (frontend/fast_path.py): calls of a seen
signature replay the first call's decisions. They must give the full path's
results, raise its errors, and really skip it."""
import pytest
import torch
import torch.nn.functional as F

import attncc
from attncc import api
from attncc.frontend import fast_path


def _ref(q, k, v, causal=False, scale=None, window=None):
    L, S = q.shape[2], k.shape[2]
    mask = None
    if window is not None or (causal and L > 1):
        i = torch.arange(L)[:, None] + (S - L if window is not None else 0)
        j = torch.arange(S)[None, :]
        mask = j <= i
        if window is not None and window[0] >= 0:
            mask &= j >= i - window[0]
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask,
                                          scale=scale, enable_gqa=True).float()


@pytest.fixture
def no_full_path(monkeypatch):
    """After this fixture's `arm()`, the full path's kernel part fails."""
    def arm():
        def boom(*a, **kw):
            raise AssertionError("the full path ran")
        monkeypatch.setattr(api, "_run_kernel", boom)
    return arm


@pytest.mark.parametrize("Hq,Hkv,L,causal,window,scale", [
    (8, 2, 1, False, None, None),       # GQA decode: packed query heads
    (4, 4, 1, False, None, 0.3),        # MHA decode
    (8, 2, 3, True, None, None),        # causal chunk, not packed
    (4, 2, 1, False, (16, 0), None),    # sliding window
])
def test_decode_loop_replays_the_first_call(Hq, Hkv, L, causal, window, scale, no_full_path):
    g = torch.Generator().manual_seed(11)
    D = 32
    kc, vc = torch.randn(1, Hkv, 200, D, generator=g), torch.randn(1, Hkv, 200, D, generator=g)
    kw = dict(causal=causal, window=window, scale=scale)
    with torch.inference_mode():
        q = torch.randn(1, Hq, L, D, generator=g)
        attncc.attention(q, kc[:, :, :40], vc[:, :, :40], **kw)   # full path: the recipe
        no_full_path()
        hits = attncc.cache_info()["hits"]
        for S in (41, 64, 65, 130, 200):
            q = torch.randn(1, Hq, L, D, generator=g)
            k, v = kc[:, :, :S], vc[:, :, :S]
            out = attncc.attention(q, k, v, **kw)
            torch.testing.assert_close(out, _ref(q, k, v, **kw), rtol=2e-5, atol=2e-5,
                                       msg=lambda m: f"S={S}: {m}")
        assert attncc.cache_info()["hits"] == hits + 5


def test_a_transposed_query_view_is_still_read_right():
    g = torch.Generator().manual_seed(12)
    k, v = torch.randn(1, 2, 50, 32, generator=g), torch.randn(1, 2, 50, 32, generator=g)
    with torch.inference_mode():
        for step in range(3):    # the second and third calls take the fast path
            q = torch.randn(1, 1, 8, 32, generator=g).transpose(1, 2)   # [1, 8, 1, 32] view
            torch.testing.assert_close(attncc.attention(q, k, v), _ref(q, k, v),
                                       rtol=2e-5, atol=2e-5)


def test_errors_are_the_full_paths():
    g = torch.Generator().manual_seed(13)
    q = torch.randn(1, 4, 1, 32, generator=g)
    k, v = torch.randn(1, 2, 30, 32, generator=g), torch.randn(1, 2, 30, 32, generator=g)
    attncc.attention(q, k, v)
    assert fast_path.lookup(fast_path.key(q, k, v, False, None, None, None)) is not None
    with pytest.raises(attncc.InputError, match="different sequence lengths"):
        attncc.attention(q, k, v[:, :, :20])
    with pytest.raises(attncc.InputError, match="requires grad"):
        attncc.attention(q.clone().requires_grad_(True), k, v)
    with pytest.raises(attncc.InputTypeError, match="causal must be a bool"):
        attncc.attention(q, k, v, causal=0)
    attncc.attention(q, k, v, window=(4, 0))
    with pytest.raises(attncc.InputTypeError, match="window must be"):
        attncc.attention(q, k, v, window=(4, False))
    # No keys: zeros, as the full path gives.
    out = attncc.attention(q, k[:, :, :0], v[:, :, :0])
    assert out.shape == (1, 4, 1, 32) and not out.any()


def test_threads_and_clear_caches_are_part_of_the_signature():
    g = torch.Generator().manual_seed(14)
    q = torch.randn(1, 4, 1, 32, generator=g)
    k, v = torch.randn(1, 2, 30, 32, generator=g), torch.randn(1, 2, 30, 32, generator=g)
    attncc.attention(q, k, v)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert fast_path.key(q, k, v, False, None, None, None)[-1] == 1
        torch.testing.assert_close(attncc.attention(q, k, v), _ref(q, k, v), rtol=2e-5,
                                   atol=2e-5)
    finally:
        torch.set_num_threads(before)
    attncc.clear_caches()
    assert fast_path.lookup(fast_path.key(q, k, v, False, None, None, None)) is None
    attncc.attention(q, k, v, num_threads=1)    # options: never the fast path
    attncc.attention(q, k, v, num_threads=1)
    assert fast_path.lookup(fast_path.key(q, k, v, False, None, None, None)) is None


def test_replays_run_the_kernel_natively_and_fix_layouts_the_checked_way(monkeypatch):
    """Tensors of a seen signature go straight to the kernel's native call;
    a K view whose strides the kernel does not take goes through
    CpuKernel.__call__, which makes it contiguous."""
    from attncc.runtime.cpu import CpuKernel
    g = torch.Generator().manual_seed(13)
    q = torch.randn(1, 8, 1, 32, generator=g)
    kc, vc = torch.randn(1, 2, 90, 32, generator=g), torch.randn(1, 2, 90, 32, generator=g)
    checked = []
    original = CpuKernel.__call__

    def counted(self, *a, **kw):
        checked.append(1)
        return original(self, *a, **kw)

    with torch.inference_mode():
        attncc.attention(q, kc[:, :, :40].contiguous(), vc[:, :, :40].contiguous())
        monkeypatch.setattr(CpuKernel, "__call__", counted)
        for S in (41, 64, 90):
            k, v = kc[:, :, :S].contiguous(), vc[:, :, :S].contiguous()
            torch.testing.assert_close(attncc.attention(q, k, v), _ref(q, k, v),
                                       rtol=2e-5, atol=2e-5, msg=lambda m: f"S={S}: {m}")
        assert checked == []
        # K stored [.., D, S] and viewed as [.., S, D]: rows are not contiguous.
        k, v = kc[:, :, :70].transpose(2, 3).contiguous().transpose(2, 3), vc[:, :, :70]
        torch.testing.assert_close(attncc.attention(q, k, v), _ref(q, k, v), rtol=2e-5, atol=2e-5)
        assert checked == [1]


def test_the_cpu_class_is_part_of_the_signature(monkeypatch):
    """ATTNCC_CPU (the default CPU class, which the options follow) picks
    another kernel: after it changes, a call goes the full path instead of
    replaying the previous class's kernel."""
    from attncc.targets import cpu as cpu_target
    if cpu_target.missing_features(cpu_target.ISAS["x86-64-v3"]):
        pytest.skip("needs a host that runs x86-64-v3 (AVX2) code")
    g = torch.Generator().manual_seed(15)
    q = torch.randn(1, 4, 1, 32, generator=g)
    k, v = torch.randn(1, 2, 30, 32, generator=g), torch.randn(1, 2, 30, 32, generator=g)
    full = []
    real = api._run_kernel
    monkeypatch.setattr(api, "_run_kernel", lambda *a, **kw: full.append(1) or real(*a, **kw))
    monkeypatch.delenv("ATTNCC_CPU", raising=False)
    attncc.attention(q, k, v)
    attncc.attention(q, k, v)
    assert len(full) == 1
    monkeypatch.setenv("ATTNCC_CPU", "x86-64-v3")
    torch.testing.assert_close(attncc.attention(q, k, v), _ref(q, k, v), rtol=2e-5, atol=2e-5)
    assert len(full) == 2
