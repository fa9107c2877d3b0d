"""`rlp-tune`: the command line.

    rlp-tune train configs/digits_mlp.toml --set rlp.lam=10 --out runs/lam10   # resumes if runs/lam10 has a checkpoint
    rlp-tune keys                                   # every config key with type, default, doc
    rlp-tune sweep search_spaces/demo.toml          # Optuna + ASHA on an embedded local Ray
    rlp-tune resume STORAGE/NAME | status STORAGE/NAME
    rlp-tune query DIR "SELECT ..." | analyze DIR [--json] | report DIR --out REPORT_DIR
    rlp-tune probe DIR --probes knn,masc | offline-rlp DIR

Bad input (config key, type, range, dataset folder, checkpoint, results file) → one line on
stderr and exit code 2, before any work starts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import UserError


def _nonneg_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {n}")
    return n


def _pos_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {n}")
    return n


def _epochs(text: str) -> str:
    """'all' or a comma list of epoch numbers ≥ 0 (kept as text: select_checkpoints reads it)."""
    if text.strip() != "all":
        try:
            [_nonneg_int(e) for e in text.split(",") if e.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'all' or a comma list of epochs ≥ 0, got {text!r}") from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit code 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"rlp-tune: error: {self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="rlp-tune", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one run (single process, or DDP under torchrun)")
    t.add_argument("config", nargs="?", help="TOML config (default: built-in defaults)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--out", help="output folder (checkpoints, Parquet); default runs/<config name>")
    t.add_argument("--no-progress", action="store_true")

    sub.add_parser("keys", help="list every config key")

    for name, helptext in [("sweep", "run a sweep on Ray"), ("resume", "continue an interrupted sweep"),
                           ("status", "show a sweep's trials")]:
        s = sub.add_parser(name, help=helptext)
        s.add_argument("target", help="search-space TOML (sweep) or sweep folder (resume, status)")
        if name == "sweep":
            s.add_argument("--address", default=None, help="existing Ray cluster (auto, ray://host:port)")
            s.add_argument("--storage", default=None, help="storage folder or URI (default ./results)")
            s.add_argument("--name", default=None, help="sweep name (default: the space file's name)")
            s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="fixed config override for every trial")
        if name == "resume":
            s.add_argument("--address", default=None)
        if name in ("sweep", "resume"):
            s.add_argument("--verbose", action="store_true",
                           help="a line per trial epoch instead of the one live progress line")
    d = sub.add_parser("dashboard", help="optuna-dashboard on a sweep's Optuna study, on 127.0.0.1 "
                                         "(needs the extra: pip install 'rlp_tune[dashboard]')")
    d.add_argument("target", help="sweep folder (holds optuna.journal)")
    d.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")

    q = sub.add_parser("query", help="SQL (DuckDB) over a results folder")
    q.add_argument("root")
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    a = sub.add_parser("analyze", help="fit memorization/generalization curves")
    a.add_argument("root")
    a.add_argument("--json", action="store_true")
    r = sub.add_parser("report", help="write a self-contained HTML report")
    r.add_argument("root")
    r.add_argument("--out", required=True)
    for x in (a, r):
        x.add_argument("--boot", type=_nonneg_int, default=200, metavar="N",
                       help="bootstrap resamples per fit for the CIs (0: no CIs; default 200)")
        x.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
        x.add_argument("--at-epoch", type=_nonneg_int, default=None, metavar="E",
                       help="fit every trial's metrics at epoch E, leaving out trials that ended earlier "
                            "(default: each trial's last epoch)")
    pr = sub.add_parser("probe", help="probe saved checkpoints (k-NN, linear, MASC, NCM)")
    pr.add_argument("root")
    pr.add_argument("--epochs", type=_epochs, default="all", help="comma list of epochs or 'all'")
    pr.add_argument("--probes", default="knn,ncm")
    pr.add_argument("--layers", default="penultimate")
    pr.add_argument("--labels", choices=["clean", "train"], default=None)
    pr.add_argument("--set", action="append", default=[], metavar="probe.KEY=VALUE", dest="settings",
                    help="override a probe.* key of the run's config (k, masc_threshold, linear, max_train)")
    o = sub.add_parser("offline-rlp", help="train fresh RLP heads on frozen saved checkpoints (paper 5.1)")
    o.add_argument("root")
    o.add_argument("--head-epochs", type=_pos_int, default=None,
                   help="audit-head training epochs per checkpoint (default: the run's rlp.audit_epochs)")
    o.add_argument("--epochs", type=_epochs, default="all", help="comma list of checkpoint epochs or all")

    args = p.parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"rlp-tune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlp-tune: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.cmd == "keys":
        from .config import describe
        print(describe())
        return 0
    if args.cmd == "train":
        return cmd_train(args)
    if args.cmd in ("sweep", "resume", "status", "dashboard"):
        from .tune import cli as tune_cli
        return getattr(tune_cli, f"cmd_{args.cmd}")(args)
    if args.cmd == "query":
        from .analysis import run_query
        print(run_query(args.root, args.sql, args.format))
        return 0
    if args.cmd in ("analyze", "report"):
        from .analysis.query import require_results
        require_results(args.root)                      # "no results in DIR", before any output
    if args.cmd == "analyze":
        import json

        from .analysis import analyze, format_analysis
        doc = analyze(args.root, n_boot=args.boot, seed=args.seed, at_epoch=args.at_epoch)
        print(json.dumps(doc.to_dict(), indent=2) if args.json else format_analysis(doc))
        return 0
    if args.cmd == "report":
        from .analysis import write_report
        from .rundir import check_folder
        check_folder(args.out, "--out")
        print(write_report(args.root, args.out, n_boot=args.boot, seed=args.seed, at_epoch=args.at_epoch))
        return 0
    if args.cmd == "probe":
        from .checks import check_probe_names
        from .probes.offline import probe_checkpoints
        check_probe_names(args.probes.split(","), "--probes")
        layers = args.layers.split(",")
        probe_checkpoints(args.root, epochs=args.epochs, probes=args.probes.split(","),
                          layers=["all"] if layers == ["all"] else layers, labels=args.labels,
                          settings=args.settings)
        return 0
    if args.cmd == "offline-rlp":
        from .probes.offline_rlp import offline_rlp
        offline_rlp(args.root, head_epochs=args.head_epochs, epochs=args.epochs)
        return 0
    raise AssertionError(args.cmd)


def cmd_train(args) -> int:
    from .config import load_config, to_toml
    from .rundir import check_folder
    cfg = load_config(args.config, args.overrides)          # validated before any work
    out = Path(args.out or Path("runs") / (Path(args.config).stem if args.config else "default"))
    check_folder(out, "--out")
    from .train import Trainer
    # the Trainer checks data sizes and memory, then locks the folder (made only now) and reads its checkpoint
    trainer = Trainer(cfg, out_dir=out, progress=not args.no_progress and sys.stderr.isatty())
    start_epoch, t0 = trainer.epoch, time.time()
    if not trainer.finished and start_epoch < cfg.run.epochs:   # config.toml describes the run only if it trains
        (out / "config.toml").write_text(to_toml(cfg))
    if start_epoch:
        print(f"resuming {out} (trial {trainer.trial_id}) from epoch {start_epoch}/{cfg.run.epochs}", file=sys.stderr)
    print(f"train {cfg.model.name} on {cfg.data.name} (m={trainer.data.m}, device={trainer.device}) "
          f"rlp: λ={cfg.rlp.lam:g} heads={cfg.rlp.heads} n={trainer.n} taps={','.join(trainer.rlp_taps) or '-'}",
          file=sys.stderr)
    last = None
    for rec in trainer.fit():
        last = rec
        line = (f"epoch {rec.epoch:>3}/{cfg.run.epochs}  train acc {rec.get('train', 'acc'):.3f}  "
                f"test acc {rec.get('test', 'acc'):.3f}")
        if trainer.rlp_taps:
            line += f"  rand acc {rec.get('train', 'rand_acc', layer=trainer.rlp_taps[-1]):.3f}"
        line += f"  {rec.get('train', 'samples_per_s'):.0f} samples/s"
        print(line, file=sys.stderr, flush=True)
    print(summary(trainer, last, time.time() - t0, out))
    return 0


def summary(trainer, rec, wall: float, out: Path) -> str:
    cfg = trainer.cfg
    if rec is None:
        return f"nothing to do: {out} already holds {trainer.epoch}/{cfg.run.epochs} epochs"
    lines = ["", f"== rlp-tune train: {trainer.trial_id} ==",
             f"model {cfg.model.name}  data {cfg.data.name} (train {trainer.data.m})  epochs {rec.epoch}/{cfg.run.epochs}"
             f"  wall {wall:.1f}s",
             f"{'split':<8}{'acc':>8}{'loss':>9}"]
    for split in trainer.data.splits:
        lines.append(f"{split:<8}{rec.get(split, 'acc'):>8.4f}{rec.get(split, 'loss_class'):>9.4f}")
    if trainer.rlp_taps:
        lines.append(f"random-label accuracy (n={trainer.n}, chance {1 / trainer.n:.4f}, λ={cfg.rlp.lam:g}):")
        for tap in trainer.rlp_taps:
            mark = " (regularized)" if tap in trainer.reg_taps and cfg.rlp.lam > 0 else ""
            lines.append(f"  {tap:<14}{rec.get('train', 'rand_acc', layer=tap):.4f}  "
                         f"L_rnd {rec.get('train', 'loss_rnd', layer=tap):.3f}  "
                         f"L_reg {rec.get('train', 'loss_reg', layer=tap):.3f}{mark}")
    lines += [f"results: {out / 'parquet'}  (rlp-tune query {out} \"SELECT * FROM metrics LIMIT 5\")",
              f"checkpoint: {out / 'checkpoints' / 'last.pt'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
