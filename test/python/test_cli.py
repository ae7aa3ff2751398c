"""The `attncc` command line end to end: compile, run, compare, explain on the
small attention functions of test/python/cli_inputs/, their files (IR, PTX,
cubin, SVG, HTML, JSON) parsed, the schedule picture checked against the IR's
pipelining tags, and bad input (files, functions, flags) giving one clear
error line and a non-zero exit status, never a traceback."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import attncc
from attncc.targets import gpu as agpu
from attncc.cli import main as attncc_main
from attncc.cli import schedule as sched
from attncc.reference import triton_attention as ta

INPUTS = Path(__file__).resolve().parent / "cli_inputs"
CAUSAL = str(INPUTS / "causal.py")

needs_ptxas = pytest.mark.skipif(agpu.find_ptxas() is None,
                                 reason="ptxas (CUDA toolkit) not installed")
needs_triton = pytest.mark.skipif(not ta.available(),
                                  reason="triton not installed (pip install 'attncc[triton]')")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNCC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNCC_PROGRESS", raising=False)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Runs `attncc argv...` in this process; (exit status, stdout, stderr)."""
    rc = attncc_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def subprocess_env() -> dict:
    env = dict(os.environ)
    pkg_root = str(Path(attncc.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ----------------------------------------------------------------------------- help

@pytest.mark.parametrize("command", [None, "compile", "run", "compare", "explain"])
def test_help_works_for_every_subcommand(capsys, command):
    argv = ([command] if command else []) + ["--help"]
    with pytest.raises(SystemExit) as e:
        attncc_main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: attncc" in out
    if command:
        assert "FILE.py[:FUNCTION]" in out and "--target" in out
    else:
        for c in ("compile", "run", "compare", "explain"):
            assert c in out


def test_console_script_entry_point():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'attncc = "attncc.cli:main"' in text
    assert 'attncc-opt = "attncc.tools:attncc_opt_main"' in text
    proc = subprocess.run([sys.executable, "-m", "attncc.cli", "explain", "--help"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0 and "--pass" in proc.stdout


# ----------------------------------------------------------------------------- compile

def test_compile_writes_every_cpu_stage(capsys, tmp_path):
    marks = {"graph": "attn.matmul", "fused": "attn.attention", "tiled": "attn.kv_loop",
             "pipelined": 'attn.part = "prologue"', "llvm": "llvm.func"}
    assert list(marks) == [s.name for s in attncc.pipeline.stages_for("cpu")]
    for stage, mark in marks.items():
        out = tmp_path / f"{stage}.mlir"
        rc, _, err = cli(capsys, "compile", CAUSAL, "--emit", stage, "-o", out)
        assert rc == 0, err
        assert mark in out.read_text(), stage
        assert f"wrote stage '{stage}'" in err


def test_compile_to_stdout_with_flags_and_function_name(capsys):
    rc, out, _ = cli(capsys, "compile", f"{INPUTS / 'two_functions.py'}:causal", "--emit", "fused",
                     "--shape", "1x4x96x32", "--dtype", "bf16")
    assert rc == 0
    assert "mask causal" in out and "tensor<1x4x96x32xbf16>" in out
    rc, out, _ = cli(capsys, "compile", f"{INPUTS / 'no_inputs.py'}", "--emit", "fused",
                     "--shape", "q=1x2x16x32", "--shape", "k=1x2x40x32", "--shape", "v=1x2x40x32")
    assert rc == 0
    assert "scale 1.250000e-01 mask none" in out and "tensor<1x2x40x32xf16>" in out


@needs_ptxas
def test_compile_gpu_stages_ptx_cubin_metadata(capsys, tmp_path):
    rc, _, err = cli(capsys, "compile", CAUSAL, "--target", "sm_80", "--emit", "ptx",
                     "-o", tmp_path / "k.ptx")
    assert rc == 0, err
    ptx = (tmp_path / "k.ptx").read_text()
    assert ".target sm_80" in ptx and "mma.sync.aligned.m16n8k16" in ptx and "cp.async" in ptx
    rc, _, err = cli(capsys, "compile", CAUSAL, "--target", "sm_80", "--emit", "cubin",
                     "-o", tmp_path / "k.cubin")
    assert rc == 0, err
    assert (tmp_path / "k.cubin").read_bytes()[:4] == b"\x7fELF"
    rc, out, _ = cli(capsys, "compile", CAUSAL, "--target", "sm_80", "--emit", "metadata")
    md = json.loads(out)
    assert md["gpu"]["registers"] > 0 and md["gpu"]["block"] == [128, 1, 1]
    rc, out, _ = cli(capsys, "compile", CAUSAL, "--target", "sm_80", "--emit", "gpu")
    assert "gpu.launch_func" in out and "nvgpu.mma.sync" in out
    # A cubin is binary: not to a terminal.
    rc, _, err = cli(capsys, "compile", CAUSAL, "--target", "sm_80", "--emit", "cubin")
    assert rc == 2 and "-o FILE.cubin" in err


# ----------------------------------------------------------------------------- schedule

_TAG = re.compile(r"(attn\.\w+)\s.*\{([^{}]*attn\.part = \"(\w+)\"[^{}]*)\}")


def ir_tags(pipelined: str) -> list[dict]:
    """The pipelining tags of the attn ops, straight from the IR text."""
    tags = []
    for line in pipelined.splitlines():
        m = _TAG.search(line)
        if not m:
            continue
        attrs = m.group(2)
        it = re.search(r"attn\.iteration = (\d+)", attrs)
        uc = re.search(r"attn\.unrolled_copy = (\d+)", attrs)
        tags.append({"op": m.group(1), "part": m.group(3), "iteration": int(it.group(1)),
                     "unrolled_copy": int(uc.group(1)) if uc else None,
                     "transposed": " transposed " in line})
    return tags


@pytest.mark.parametrize("stages,unroll", [(3, 2), (2, 1), (4, 1), (1, 1)])
def test_schedule_picture_matches_the_ir_tags(capsys, tmp_path, stages, unroll):
    # 64-row query blocks: the longest causal KV loop has enough blocks for every depth.
    opts = ["--num-stages", stages, "--unroll", unroll, "--block-m", 64]
    rc, _, _ = cli(capsys, "compile", CAUSAL, *opts, "--emit", "pipelined", "-o",
                   tmp_path / "p.mlir")
    assert rc == 0
    tags = ir_tags((tmp_path / "p.mlir").read_text())
    rc, _, _ = cli(capsys, "compile", CAUSAL, *opts, "--emit", "schedule", "-o",
                   tmp_path / "s.svg")
    assert rc == 0
    svg = (tmp_path / "s.svg").read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    cells = sched.svg_cells(svg)
    pro = sorted({t["iteration"] for t in tags if t["part"] == "prologue"})
    epi = sorted({t["iteration"] for t in tags if t["part"] == "epilogue"})
    copies = sorted({t["unrolled_copy"] for t in tags if t["unrolled_copy"] is not None})
    root = dict(re.findall(r'data-([\w-]+)="([^"]*)"', svg.split(">", 1)[0]))
    assert int(root["num-stages"]) == stages
    assert int(root["lead"]) == len(pro) == stages - 1
    assert int(root["unroll"]) == (len(copies) or 1) == unroll
    # Prologue: one load cell per prologue iteration of the IR, KV block = iteration,
    # the ops the IR tags with that iteration (the K and V copies).
    pcells = [c for c in cells if c["part"] == "prologue"]
    assert [int(c["ir-iteration"]) for c in pcells] == pro
    assert all(c["lane"] == "load" and int(c["kv"]) == int(c["ir-iteration"]) for c in pcells)
    for c in pcells:
        ops = [t for t in tags if t["part"] == "prologue" and t["iteration"] == int(c["ir-iteration"])]
        assert all(t["op"] == "attn.copy_tile" for t in ops)
        want = sorted("copy K" if t["transposed"] else "copy V" for t in ops)
        assert sorted(c["ops"].split(", ")) == want
    # Epilogue: one compute cell per epilogue iteration, the last KV blocks in order.
    ecells = [c for c in cells if c["part"] == "epilogue"]
    assert [int(c["ir-iteration"]) for c in ecells] == epi
    n = int(root["kv-blocks"])
    assert n == 128 // 64
    assert [int(c["kv"]) for c in ecells] == [n - len(epi) + e for e in epi]
    assert all(c["lane"] == "compute" and "Q·Kᵀ" in c["ops"] and "P·V" in c["ops"]
               for c in ecells)
    epi_ops = {t["op"] for t in tags if t["part"] == "epilogue"}
    assert "attn.copy_tile" not in epi_ops
    # Steady state: loads run len(prologue) KV blocks ahead of the compute.
    kcells = [c for c in cells if c["part"] in ("kernel", "remainder")]
    by_step: dict = {}
    for c in kcells:
        by_step.setdefault(c["step"], {})[c["lane"]] = c
    for step in by_step.values():
        if "load" in step and "compute" in step:
            assert int(step["load"]["kv"]) - int(step["compute"]["kv"]) == len(pro)
    if copies:
        assert sorted({int(c["unrolled-copy"]) for c in kcells if c["part"] == "kernel"
                       and c["unrolled-copy"]}) <= copies
    # Every KV block is loaded once and computed once (active cells).
    active = [c for c in cells if c["active"] == "true"]
    assert sorted(int(c["kv"]) for c in active if c["lane"] == "load") == list(range(n))
    assert sorted(int(c["kv"]) for c in active if c["lane"] == "compute") == list(range(n))
    if stages == 1:
        assert not pro and not epi and not tags


def test_schedule_timeline_of_a_long_loop_elides_the_middle():
    c = attncc.compile(_load_causal(), stop_after="pipelined", num_stages=3,
                       unroll=2, block_m=64).lower(*_examples())
    s = sched.read_schedule(c.ir("pipelined"), block_n=64)
    tl = sched.timeline(s, n=40)
    assert tl.gap_after is not None
    comp = [c.kv for c in tl.cells if c.lane == "compute"]
    assert comp[:2] == [0, 1] and comp[-1] == 39
    text = sched.render_text(tl)
    assert "..." in text and "#39" in text


def _load_causal():
    from attncc.cli.inputs import load_program

    return load_program(CAUSAL).fn


def _examples():
    import torch

    return [torch.empty(1, 2, 128, 64, dtype=torch.float16, device="meta") for _ in range(3)]


# ----------------------------------------------------------------------------- compare

class _Table(HTMLParser):
    """Rows of <table class="compare"> and the SVGs of an HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.in_table = self.in_cell = False
        self.svgs: list[str] = []
        self.styles = 0
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "compare":
            self.in_table = True
        elif self.in_table and tag == "tr":
            self.rows.append([])
        elif self.in_table and tag in ("td", "th"):
            self.in_cell = True
            self.rows[-1].append("")
        elif tag == "svg":
            self.svgs.append(a.get("class", ""))
        elif tag == "style":
            self.styles += 1
        for k in ("src", "href"):
            if k in a and not str(a[k]).startswith(("data:", "#")):
                self.external.append(a[k])

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False
        elif tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        if self.in_table and self.in_cell:
            self.rows[-1][-1] += data


@needs_ptxas
def test_compare_two_option_sets_table_html_json(capsys, tmp_path):
    html_path, json_path = tmp_path / "r.html", tmp_path / "r.json"
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "sm_90a", "--a", "num_stages=1",
                       "--b", "num_stages=3", "--html", html_path, "--json", json_path,
                       "--diff", "pipelined", "--progress", "always")
    assert rc == 0, err
    for row in ("registers / thread", "spill stores (bytes)", "shared memory (bytes)",
                "tensor-core ops", "async copies (cp.async)", "shared loads (ld.shared)",
                "global stores (st.global)", "barriers", "total PTX instructions", "SASS"):
        assert row in out, row
    assert "B - A" in out
    assert "compare [" in err and "2/2" in err                 # the progress bar
    assert "--- A: pipelined" in out and "+++ B: pipelined" in out
    assert re.search(r"^\+.*memref<3x64x64xf32>", out, re.M)   # 3 K/V slots in B only
    data = json.loads(json_path.read_text())
    a, b = data["builds"]
    assert a["options"]["num_stages"] == 1 and b["options"]["num_stages"] == 3
    assert b["shared_bytes"] > a["shared_bytes"]               # more K/V slots
    assert a["schedule"]["lead"] == 0 and b["schedule"]["lead"] == 2
    assert a["registers"] > 0 and a["spill_store_bytes"] == 0
    # sm_90a loads its tiles with TMA boxes, not 16-byte cp.async.
    assert b["mix"]["TMA copies (cp.async.bulk)"] > b["mix"]["async copies (cp.async)"] == 0
    # The HTML report: self-contained, the table with the same numbers, the pictures.
    page = html_path.read_text()
    p = _Table()
    p.feed(page)
    assert p.styles == 1 and not p.external
    rows = {r[0].strip(): r[1:] for r in p.rows if r}
    assert rows["registers / thread"][:2] == [str(a["registers"]), str(b["registers"])]
    assert rows["shared memory (bytes)"][:2] == [str(a["shared_bytes"]), str(b["shared_bytes"])]
    assert p.svgs.count("attncc-schedule") == 2 and "mix-chart" in p.svgs
    svg_b = re.findall(r'<svg[^>]*class="attncc-schedule".*?</svg>', page, re.S)[1]
    # 2 KV blocks, 3 stages: both blocks' copies are in the prologue, the loop runs 0 times.
    assert {c["part"] for c in sched.svg_cells(svg_b)} == {"prologue", "epilogue"}
    assert 'data-stage="ptx"' in page and 'data-stage="pipelined"' in page


@needs_ptxas
def test_compare_without_disassembler_says_na(capsys, monkeypatch):
    monkeypatch.setenv("ATTNCC_DISASSEMBLER", "none")
    rc, out, _ = cli(capsys, "compare", CAUSAL, "--target", "sm_80", "--a", "block_n=32",
                     "--b", "block_n=64")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("SASS"))
    assert "no disassembler" in line and line.split()[-2:] == ["n/a", "n/a"]


def test_compare_cpu_sweep_and_second_file(capsys, tmp_path):
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "cpu", "--sweep",
                       "num_stages=1,2", "--progress", "always", "--json", tmp_path / "s.json")
    assert rc == 0, err
    assert "FMAs (llvm.intr.fma/fmuladd)" in out and "registers" not in out
    assert err.count("compare [") == 2
    assert [b["options"]["num_stages"] for b in json.loads((tmp_path / "s.json").read_text())
            ["builds"]] == [1, 2]
    rc, out, _ = cli(capsys, "compare", f"{INPUTS / 'two_functions.py'}:full",
                     f"{INPUTS / 'two_functions.py'}:causal", "--target", "cpu", "--diff", "fused")
    assert rc == 0
    assert "-    %0 = attn.attention" in out and "mask causal" in out


@needs_ptxas
@needs_triton
def test_compare_with_triton(capsys, tmp_path):
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "sm_90a", "--b", "triton",
                       "--json", tmp_path / "t.json", "--diff")
    assert rc == 0, err
    a, b = json.loads((tmp_path / "t.json").read_text())["builds"]
    assert b["kind"] == "triton" and not b["skipped"]
    assert b["registers"] > 0 and b["shared_bytes"] > 0
    # Both on Hopper's warpgroup MMA.
    assert b["mix"]["  wgmma.mma_async"] > 0 and a["mix"]["  wgmma.mma_async"] > 0
    assert a["mix"]["  mma.sync"] == 0
    assert "Triton 3.9" in out and "--- A: ptx" in out


@needs_ptxas
def test_compare_mma_sync_against_wgmma(capsys, tmp_path):
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "sm_90a", "--a", "mma=mma_sync",
                       "--b", "mma=wgmma", "--json", tmp_path / "m.json")
    assert rc == 0, err
    a, b = json.loads((tmp_path / "m.json").read_text())["builds"]
    assert a["options"]["mma"] == "mma_sync" and b["options"]["mma"] == "wgmma"
    assert a["mix"]["  mma.sync"] > 0 and a["mix"]["  wgmma.mma_async"] == 0
    assert b["mix"]["  wgmma.mma_async"] > 0 and b["mix"]["  mma.sync"] == 0
    rc, _, err = cli(capsys, "compare", CAUSAL, "--target", "sm_90a", "--a", "mma=hmma")
    assert rc != 0 and "mma='hmma': expected one of auto, wgmma, mma_sync" in err
    # TMA against cp.async loads in the wgmma kernel; --tma on the command line.
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "sm_90a", "--a", "tma=off",
                       "--b", "tma=on", "--json", tmp_path / "t.json")
    assert rc == 0, err
    a, b = json.loads((tmp_path / "t.json").read_text())["builds"]
    assert a["options"]["tma"] is False and b["options"]["tma"] is True
    assert a["mix"]["async copies (cp.async)"] > 0 and a["mix"]["TMA copies (cp.async.bulk)"] == 0
    assert b["mix"]["TMA copies (cp.async.bulk)"] > 0 and b["mix"]["async copies (cp.async)"] == 0
    rc, out, err = cli(capsys, "compile", CAUSAL, "--target", "sm_90a", "--tma", "off",
                       "--emit", "ptx", "-o", tmp_path / "k.ptx")
    assert rc == 0, err
    ptx = (tmp_path / "k.ptx").read_text()
    assert "cp.async.cg.shared.global" in ptx and "cp.async.bulk.tensor" not in ptx


def test_compare_triton_without_triton_skips_clearly(capsys, monkeypatch):
    monkeypatch.setattr(ta, "available", lambda: False)
    rc, out, err = cli(capsys, "compare", CAUSAL, "--target", "sm_80", "--b", "triton")
    assert rc == 0
    assert "skipped B (triton): Triton is not installed" in err
    assert "pip install 'attncc[triton]'" in err


@needs_triton
def test_triton_reference_numerics_in_the_interpreter():
    """The reference kernel itself, run by Triton's interpreter on the CPU."""
    code = ("import torch\n"
            "from attncc.reference import triton_attention as ta\n"
            "g = torch.Generator().manual_seed(0)\n"
            "for causal, n in ((False, 48), (True, 40)):\n"
            "    q, k, v = (torch.randn(1, 2, n, 32, generator=g).half() for _ in range(3))\n"
            "    o = ta.launch(q, k, v, causal, block_m=16, block_n=16, num_warps=1, num_stages=2)\n"
            "    r = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(),\n"
            "                                                      v.double(), is_causal=causal)\n"
            "    assert (o.double() - r).abs().max() < 3e-3, causal\n")
    env = dict(subprocess_env(), TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ----------------------------------------------------------------------------- run

def test_run_checks_against_torch_and_times(capsys, tmp_path):
    rc, out, err = cli(capsys, "run", CAUSAL, "--iters", 2, "--warmup", 0, "--json",
                       tmp_path / "r.json")
    assert rc == 0, err
    assert "reference: the function in float64" in out
    m = re.search(r"max abs error: attncc (\S+)\s+torch float16 (\S+)\s+ok", out)
    assert m and float(m.group(1)) < 5e-3
    assert re.search(r"time \(median of 2\): attncc \S+ ms\s+torch \S+ ms", out)
    r = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert r["ok"] and r["attncc_s"] > 0
    rc, out, _ = cli(capsys, "run", CAUSAL, "--reference", "sdpa", "--iters", 1, "--warmup", 0)
    assert rc == 0 and "torch SDPA in float64" in out


def test_run_real_inputs_with_a_mask_and_a_sweep(capsys):
    rc, out, err = cli(capsys, "run", INPUTS / "masked.py", "--iters", 1, "--warmup", 0,
                       "--sweep", "block_n=16,32", "--progress", "always")
    assert rc == 0, err
    assert "(random values)" not in out
    assert len(re.findall(r"^block_n=\d+\s+\S+\s+ok\s", out, re.M)) == 2
    assert "run [" in err and "2/2" in err
    rc, _, err = cli(capsys, "run", INPUTS / "masked.py", "--reference", "sdpa")
    assert rc == 2 and "--reference sdpa covers masks none and causal" in err


def test_run_says_when_inputs_hold_nan(capsys):
    # A NaN input row gives a NaN output row (attncc and torch alike): reported
    # as such, not as a "fully masked" row.
    rc, out, err = cli(capsys, "run", INPUTS / "nan_inputs.py", "--iters", 1, "--warmup", 0)
    assert rc == 0, err
    assert "fully masked" not in out
    assert re.search(r"the inputs hold non-finite values \(argument 0: 1 NaN, 0 inf\); "
                     r"attncc's output has 16 non-finite elements, the reference 16", out), out


def test_run_on_a_gpu_target_without_a_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc, _, err = cli(capsys, "run", CAUSAL, "--target", "sm_90a")
    assert rc == 1 and "no CUDA GPU" not in err and "there is none here" in err


# ----------------------------------------------------------------------------- explain

def test_explain_pass_table_and_ir_after_a_pass(capsys):
    rc, out, err = cli(capsys, "explain", CAUSAL, "--num-stages", 3, "--until", "pipelined",
                       "--pass", "attn-pipeline", "--schedule")
    assert rc == 0, err
    table = out.split("// -----//")[0]
    for name in ("attn-fuse", "attn-tile", "attn-pipeline", "attn-unroll", "canonicalize", "cse"):
        assert re.search(rf"^\s*\d+\s+\w+\s+{name}\s+\d+\.\d+\s+\d+\.\d%", table, re.M), name
    assert "attn-lower-to-cpu" not in table
    dumps = re.findall(r"// -----// IR Dump After (\S+)", out)
    assert dumps == ["attn-pipeline"]
    after = out.split("IR Dump After attn-pipeline", 1)[1]
    assert 'attn.part = "prologue"' in after and "memref<3x64x64xf32>" in after
    assert "software-pipelined schedule" in out and "#0@0" in out


def test_explain_no_ir_mlir_timing_and_gpu_stages(capsys):
    rc, out, _ = cli(capsys, "explain", CAUSAL, "--no-ir", "--until", "tiled", "--mlir-timing")
    assert rc == 0
    assert "IR Dump" not in out and "Execution time report" in out and "AttnTile" in out
    if agpu.find_ptxas() is not None:
        rc, out, _ = cli(capsys, "explain", CAUSAL, "--target", "sm_80", "--no-ir")
        assert rc == 0
        for name in ("attn-lower-to-gpu", "convert-gpu-to-nvvm", "gpu-module-to-binary", "ptxas"):
            assert re.search(rf"\s{re.escape(name)}\s", out), name


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv,code,message", [
    (["compile", "missing.py"], 2, "no such file: missing.py"),
    (["compile", str(INPUTS / "syntax_error.py")], 2, "syntax error, line 1"),
    (["compile", str(INPUTS / "no_function.py")], 2, "defines no function"),
    (["compile", str(INPUTS / "two_functions.py")], 2, "defines several functions (causal, full)"),
    (["compile", f"{INPUTS / 'causal.py'}:nope"], 2, "has no function 'nope'"),
    (["compile", str(INPUTS / "not_attention.py")], 1, "not an attention computation"),
    (["compile", str(INPUTS / "no_inputs.py")], 2, "no example inputs"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "q=1x2xAx4"], 2, "integer sizes"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "1x2xx64"], 2, "an empty size"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "q=1x2x8x4x"], 2, "an empty size"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "q=1x2x8x4"], 2, "no shape for argument 'k'"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "x=1x2x8x4"], 2, "has no argument 'x'"),
    (["compile", CAUSAL, "--block-m", "48"], 2, "block_m must be a power of two"),
    (["compile", CAUSAL, "--emit", "ptx"], 2, "unknown stage 'ptx' for target cpu"),
    (["compile", CAUSAL, "--dtype", "fp16"], 2, "--dtype needs --shape"),
    (["compare", CAUSAL], 2, "nothing to compare"),
    (["compare", CAUSAL, "--b", "bogus=3"], 2, "unknown option 'bogus'"),
    (["compare", CAUSAL, "--target", "cpu", "--b", "triton"], 2, "Triton reference is a GPU kernel"),
    (["explain", CAUSAL, "--pass", "no-such-pass", "--until", "fused"], 2, "no pass 'no-such-pass'"),
    (["run", CAUSAL, "--iters", "0"], 2, "--iters must be >= 1"),
    (["run", CAUSAL, "--sweep", "num_stages=1,2", "--sweep", "num_stages=3"], 2,
     "num_stages is swept already"),
    (["compile", str(INPUTS / "no_inputs.py"), "--shape", "1x2x0x64", "--target", "sm_80",
      "--emit", "ptx"], 1, "does no work"),
])
def test_bad_input_is_one_clear_error_line(capsys, argv, code, message):
    rc, out, err = cli(capsys, *argv)
    assert rc == code, err
    assert message in err
    assert err.startswith(f"attncc {argv[0]}: error:")
    assert len(err.strip().splitlines()) == 1


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "raises.py"
    bad.write_text("import torch\nraise RuntimeError('boom at import')\n")
    for argv, message in ((["compile", "missing.py"], "no such file"),
                          (["run", str(bad)], "RuntimeError: boom at import"),
                          (["compile", CAUSAL, "--bogus"], "unrecognized arguments")):
        proc = subprocess.run([sys.executable, "-m", "attncc.cli", *argv], capture_output=True,
                              text=True, env=subprocess_env(), timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
