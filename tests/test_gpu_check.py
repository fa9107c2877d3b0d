"""bench/gpu_check.sh, the GPU check, in its --dry mode on the CPU: every part runs and prints its
ratios, also where ray / optuna / duckdb are missing (the sweep part then says it is skipped)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the script as it runs on a machine with torch but none of ray, optuna, duckdb
WITHOUT = ("import runpy, sys\n"
           "for m in ('ray', 'optuna', 'duckdb'):\n"
           "    sys.modules[m] = None\n"
           "sys.argv = ['gpu_check.py'] + sys.argv[1:]\n"
           "runpy.run_path(%r, run_name='__main__')\n" % str(ROOT / "bench" / "gpu_check.py"))


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def test_dry_run_without_ray_optuna_duckdb():
    r = subprocess.run([sys.executable, "-c", WITHOUT, "--dry"], capture_output=True, text=True, env=_env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert re.search(r"^device: CPU .+ threads\), torch ", out, re.M)
    for mode in ("fp32", "bf16", "channels_last"):        # compile is left out of --dry
        ratio = re.search(rf"^  {mode} +([\d.]+) s/epoch +x *([\d.]+) vs fp32$", out, re.M)
        assert ratio and float(ratio.group(1)) > 0 and float(ratio.group(2)) > 0, out
    assert re.search(r"^  fp32 .* x 1\.00 vs fp32$", out, re.M)
    assert re.search(r"^loop: Trainer .* s/epoch, minimal loop .* s/epoch: ratio [\d.]+$", out, re.M), out
    assert re.search(r"^heads: n = 2,000 x 2 heads, .*fused [\d.]+ ms/step, naive [\d.]+ ms/step \(x[\d.]+\)", out, re.M)
    assert "sweep: skipped (duckdb is not installed" in out


def test_shell_wrapper_and_its_part_checks():
    env = {**_env(), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry", "--only", "heads"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("gpu_check: ") and "\ndevice: CPU " in r.stdout and "\nheads: n = 2,000" in r.stdout
    assert "trainer:" not in r.stdout
    bad = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry", "--only", "head"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "unknown part 'head'" in bad.stderr
    no_gpu = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--only", "heads"],
                            capture_output=True, text=True, env={**env, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert no_gpu.returncode != 0 and "no CUDA device visible" in no_gpu.stderr


@pytest.mark.ray
def test_dry_sweep_part_compares_whole_and_quarter_gpus():
    """The sweep part on an embedded Ray that declares one GPU: 4 trials at 1 and at 0.25 GPU each."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry", "--only", "sweep"],
                       capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"gpus_per_worker = 1: 4 trials in [\d.]+ s \(exit 0\)", r.stdout)
    assert re.search(r"gpus_per_worker = 0.25: 4 trials in [\d.]+ s \(exit 0\)", r.stdout)
    assert re.search(r"^sweep: 4 wrn16_4 trials x 2 epochs; trials per hour: \d+ at 1 GPU each, \d+ at 0.25", r.stdout, re.M)
