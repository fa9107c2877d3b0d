"""Benchmark: rlp_tune's k-NN probe vs scikit-learn's brute-force cosine KNeighborsClassifier.

    .venv/bin/python bench/probes.py                      # 50,000 × 512 train, 10,000 test, 10 classes, k = 20
    .venv/bin/python bench/probes.py --n-train 5000 --n-test 1000 --threads 2
    .venv/bin/python bench/probes.py --n-train 10000 --variants torch                  # rlp_tune only

Both see the same random float32 data (seeded). Each variant runs in its own fresh subprocess so
peak memory is honest: the subprocess builds the data, warms up, resets the kernel's RSS high-water
mark (/proc/self/clear_refs ← 5), runs the probe, and reports VmHWM (peak RSS) − VmRSS before the
call, i.e. the extra resident memory the probe needed on top of its inputs (falls back to
ru_maxrss − baseline where clear_refs is not available, and says so). Time is wall-clock of the
predict call (sklearn's fit only stores the data; it is timed too and counted). The variants run in
`--rounds` interleaved rounds (fresh subprocesses each), and each keeps its fastest round, which
damps bursts of load from other processes on a shared machine; memory is the max over rounds.

Variants: "torch" = knn_predict (fp32 blockwise matmul + running top-k), "sklearn" and
"sklearn-jobs" (below). `--variants` picks some (default: all).
Threads: torch.set_num_threads(T); sklearn gets T BLAS threads with n_jobs=1 ("sklearn") and, as a
second configuration, n_jobs=T with 1 BLAS thread each ("sklearn-jobs"); the ratio is against the
faster of the two sklearn configurations. BLAS/OpenMP env vars are set to T in every subprocess. The parent prints both
times, the speed ratio, peak memories and the fraction of identical predictions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("torch", "sklearn", "sklearn-jobs")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args) -> None:
    import resource

    import numpy as np
    rng = np.random.default_rng(args.seed)
    # generated straight in float32 so no float64 transient inflates the baseline
    xtr = rng.standard_normal((args.n_train, args.dim), dtype=np.float32)
    xte = rng.standard_normal((args.n_test, args.dim), dtype=np.float32)
    ytr = rng.integers(0, args.classes, args.n_train)
    T = args.threads
    if args.variant.startswith("torch"):
        import torch
        torch.set_num_threads(T)
        sys.path.insert(0, str(ROOT))
        from rlp_tune.probes.knn import knn_predict
        ttr, tte, tyr = torch.from_numpy(xtr), torch.from_numpy(xte), torch.from_numpy(ytr)
        knn_predict(ttr[:1000], tyr[:1000], tte[:100], k=args.k)             # warm-up
        fit = lambda: None                                                   # noqa: E731
        run = lambda: knn_predict(ttr, tyr, tte, k=args.k, num_classes=args.classes).numpy()  # noqa: E731
    else:
        from sklearn.neighbors import KNeighborsClassifier
        from threadpoolctl import threadpool_limits
        jobs = T if args.variant == "sklearn-jobs" else 1
        threadpool_limits(1 if jobs > 1 else T)
        clf = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", metric="cosine", n_jobs=jobs)
        clf.fit(xtr[:1000], ytr[:1000]).predict(xte[:100])                   # warm-up
        fit = lambda: clf.fit(xtr, ytr)                                      # noqa: E731
        run = lambda: clf.predict(xte)                                       # noqa: E731
    exact = _reset_peak()
    base_kib = _status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    fit()
    t1 = time.perf_counter()
    pred = run()
    t2 = time.perf_counter()
    peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(args.out, np.asarray(pred, dtype=np.int64))
    print(json.dumps({"fit_s": t1 - t0, "predict_s": t2 - t1, "extra_peak_mib": (peak_kib - base_kib) / 1024,
                      "method": "VmHWM-VmRSS (clear_refs)" if exact else "ru_maxrss-baseline"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the fastest counts")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return child(args)
    variants = [v for v in VARIANTS if v in args.variants.split(",")]

    env = dict(os.environ, **{v: str(args.threads) for v in
                              ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    print(f"k-NN probe: train {args.n_train} x {args.dim}, test {args.n_test}, {args.classes} classes, "
          f"k={args.k}, float32, {args.threads} threads, CPU")
    import numpy as np
    res, preds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):   # interleaved rounds; each variant keeps its fastest round
            for variant in variants:
                out = os.path.join(tmp, f"{variant}.npy")
                cmd = [sys.executable, __file__, "--variant", variant, "--out", out] + [
                    f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("variant", "variants", "out")]
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if p.returncode != 0:
                    sys.exit(f"bench/probes.py: variant {variant} failed:\n{p.stderr}")
                r = json.loads(p.stdout.strip().splitlines()[-1])
                preds[variant] = np.load(out)
                print(f"  round {rnd + 1} {variant:13s} predict {r['predict_s']:7.2f} s  (fit {r['fit_s']:.2f} s)  "
                      f"extra peak RSS {r['extra_peak_mib']:7.1f} MiB  [{r['method']}]", flush=True)
                old = res.get(variant)
                peak = max(r["extra_peak_mib"], old["extra_peak_mib"] if old else 0.0)
                if old is None or r["predict_s"] + r["fit_s"] < old["predict_s"] + old["fit_s"]:
                    res[variant] = r
                res[variant]["extra_peak_mib"] = peak
    print("best of rounds (time) / max of rounds (memory):")
    for v in variants:
        print(f"  {v:13s} {res[v]['predict_s'] + res[v]['fit_s']:7.2f} s  {res[v]['extra_peak_mib']:7.1f} MiB")
    sk = [v for v in ("sklearn", "sklearn-jobs") if v in res]
    if not sk or "torch" not in res:
        return
    best = min(sk, key=lambda v: res[v]["predict_s"] + res[v]["fit_s"])
    t_sk = res[best]["predict_s"] + res[best]["fit_s"]
    t, agree = res["torch"], float((preds["torch"] == preds[best]).mean())
    print(f"torch: speed ratio (sklearn '{best}' / torch) {t_sk / t['predict_s']:.2f}x (goal >= 3x); "
          f"extra-peak-memory ratio {res[best]['extra_peak_mib'] / max(t['extra_peak_mib'], 1e-9):.2f}x; "
          f"identical predictions {agree:.4%}")


if __name__ == "__main__":
    main()
