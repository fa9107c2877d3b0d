"""`rlp-tune`: the command line (`rlp-tune --help`, `rlp-tune COMMAND --help`).

    rlp-tune train configs/digits_mlp.toml rlp.lam=10 --out runs/lam10   # resumes if runs/lam10 has a checkpoint
    rlp-tune train configs/digits_mlp.toml --set rlp.lam=10 --log tensorboard --fresh
    rlp-tune keys [rlp]                             # every config key: type, default, description, allowed values
    rlp-tune sweep search_spaces/demo.toml          # Optuna + ASHA on an embedded local Ray
    rlp-tune resume STORAGE/NAME | status STORAGE/NAME
    rlp-tune query DIR "SELECT ..." | analyze DIR [--json] | report DIR --out REPORT_DIR
    rlp-tune probe DIR --probes knn,masc | offline-rlp DIR

Overrides: `--set key=value` or Hydra-style `key=value` words after the config (both repeatable;
`--set` wins over a positional one for the same key). Bad input (config key, type, range, dataset
folder, checkpoint, results file, missing tracker package) → one line on stderr and exit code 2,
before any work starts. `rlp-tune` alone prints the overview and exits 0.

Length (~420 lines, over the house's ~400): the argparse tree with a description for every command
and help for every argument (tests/test_cli.py checks them); each command's work lives in its module.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import re
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import FAULT_EXIT, LEFT_OUT_EXIT, ResultsWarning, UserError

COMMANDS = """Run `rlp-tune COMMAND --help` for a command's arguments; `rlp-tune keys` lists the config keys.

exit codes: 0 done; 1 a sweep ended with failed trials; 2 bad input (one line on stderr);
3 a sweep stopped by a signal (rlp-tune resume continues it); 4 done, but results files that are not
what they should be were left out (each named on stderr); 130 Ctrl-C."""
OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.\w+=")   # section.key=value
QUERY_TABLES = ("tables: metrics (one row per measurement: trial_id, epoch, split, layer, head, metric, value), "
                "trials (one row per trial: status, config keys such as \"rlp.lam\", provenance), "
                "final (one row per trial: config + last value of each metric as \"test.acc\", "
                "\"train.rand_acc\", ...); "
                "docs/results-schema.md")


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


def _port(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1 to 65535, got {n}")
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
        # "rlp-tune: error: train: ..." (self.prog is "rlp-tune train": keep the command, not the prefix twice)
        where = self.prog.removeprefix("rlp-tune").strip()
        self.exit(2, f"rlp-tune: error: {where + ': ' if where else ''}{message} (see {self.prog} --help)\n")


def _trackers(text: str) -> str:
    from .config import TRACKERS
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TRACKERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown tracker {bad[0]!r} (choose from {', '.join(TRACKERS)})")
    return ",".join(names)


def _sub(sub, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its summary + paragraphs (wrapped) + indented examples (kept)."""
    import textwrap
    text = f"{summary[0].upper()}{summary[1:]}. {description}"
    paras = [p if p.startswith("  ") else textwrap.fill(p, 100) for p in text.split("\n\n")]
    return sub.add_parser(name, help=summary, description="\n\n".join(paras),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _overrides_args(s: argparse.ArgumentParser, what: str) -> None:
    s.add_argument("sets", nargs="*", default=[], metavar="KEY=VALUE",
                   help=f"Hydra-style config override{what}, e.g. rlp.lam=10 (same as --set; "
                        "`rlp-tune keys` lists the keys)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override{what} (repeatable); TOML values, lists comma-separated")
    s.add_argument("--log", type=_trackers, default=None, metavar="TRACKERS",
                   help="send every epoch's metrics to these trackers, comma-separated: tensorboard, wandb, mlflow "
                        "(= --set logging.trackers=...; needs pip install 'rlp_tune[track]')")


def _driver_args(p) -> None:
    """What a sweep driver (`sweep`, `resume`) takes besides its target."""
    p.add_argument("--address", default=None, help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
                                                   "(default: start an embedded one)")
    p.add_argument("--verbose", action="store_true", help="a line per trial epoch instead of the one live progress line")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rlp-tune", description=(
                                "Memorization-vs-generalization experiments with random label prediction heads "
                                "(RLP-heads): train, sweep on Ray, query and analyze the results."),
                                epilog=COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version_line(),
                   help="print the rlp_tune, torch and Ray versions and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    t = _sub(sub, "train", "train one run (single process, or DDP under torchrun)",
             "Writes OUT/checkpoints/last.pt every epoch (atomic), OUT/checkpoints/model.pt (weights only, "
             "rlp_tune.load_run) when training ends, OUT/parquet/ (every epoch's metrics) and OUT/config.toml "
             "(the config as run, with a [provenance] table). Running the same command again resumes.\n\n"
             "  rlp-tune train configs/digits_mlp.toml rlp.lam=10 rlp.heads=3\n"
             "  rlp-tune train configs/digits_mlp.toml --set rlp.lam=10 --out runs/lam10 --log tensorboard")
    t.add_argument("config", nargs="?", help="TOML config (default: the built-in defaults, `rlp-tune keys`)")
    _overrides_args(t, "")
    t.add_argument("--out", help="output folder (checkpoints, Parquet, trackers); default runs/<config name>, "
                                 "plus -<8-hex hash of the overrides> when there are overrides (all count but "
                                 "run.device, data.root, logging.* and the like)")
    t.add_argument("--fresh", action="store_true",
                   help="start over: delete the run in --out (checkpoints, Parquet, config.toml, tracker files; "
                        "each is printed) instead of resuming it")
    t.add_argument("--no-progress", action="store_true", help="no per-batch progress bar (it shows only on a terminal)")

    k = _sub(sub, "keys", "list every config key with its default, description and allowed values",
             "The same dotted keys work in TOML files, --set / key=value, search spaces and the Parquet columns.")
    k.add_argument("prefix", nargs="?", default="", help="show only keys starting with this, e.g. rlp or optim.lr")

    s = _sub(sub, "sweep", "run an experiment on Ray: a designed sweep (grid, QMC, adaptive λ) or a tuning search (TPE/random + ASHA)",
             "Starts an embedded Ray on 127.0.0.1 unless --address names a cluster. The sweep folder STORAGE/NAME "
             "holds the sweep's ledger (ledger/), space.toml, parquet/ and each trial's checkpoints (trials/<id>/). Exit 3 after "
             "a clean stop by SIGUSR1/SIGTERM: `rlp-tune resume STORAGE/NAME` continues.\n\n"
             "  rlp-tune sweep search_spaces/demo.toml run.epochs=5 --log mlflow")
    s.add_argument("target", metavar="SPACE", help="search-space TOML (docs/search-spaces.md)")
    _overrides_args(s, " for every trial")
    _driver_args(s)
    s.add_argument("--storage", default=None,
                   help="storage folder or URI (s3://...) for sweep folders (default ./results)")
    s.add_argument("--name", default=None,
                   help="sweep name = folder under --storage (default: [sweep] name of the space)")
    s.add_argument("--fresh", action="store_true",
                   help="delete an existing local sweep folder STORAGE/NAME (printed) and start the sweep anew")

    rs = _sub(sub, "resume", "continue a stopped or crashed sweep from its folder, or extend a finished one",
              "Trials continue from their checkpoints, the design and the scheduler from the sweep's ledger; "
              "trials that failed are retried. With --space NEW.toml the sweep is extended first: more seeds, "
              "grid values or samples run, nothing already run again.\n\n"
              "  rlp-tune resume results/demo --space more_seeds.toml")
    rs.add_argument("target", metavar="SWEEP_DIR", help="sweep folder STORAGE/NAME (local path or URI)")
    _driver_args(rs)
    rs.add_argument("--space", default=None, metavar="NEW.toml",
                    help="extend the sweep to this search space (more seeds, grid values or num_samples; "
                         "any other change is refused, naming the key)")
    st = _sub(sub, "status", "show a sweep's trials (also while it runs)",
              "One line per trial: status, epochs, the metric and the searched values, best first.")
    st.add_argument("target", metavar="SWEEP_DIR", help="sweep folder STORAGE/NAME")
    d = _sub(sub, "dashboard", "optuna-dashboard on a sweep's Optuna study, on 127.0.0.1",
             "Needs the extra: pip install 'rlp_tune[dashboard]'. The sweep exports its study to "
             "SWEEP_DIR/optuna.journal (optuna.load_study with a JournalStorage on that file).")
    d.add_argument("target", metavar="SWEEP_DIR", help="sweep folder (holds optuna.journal)")
    d.add_argument("--port", type=_port, default=8080, help="port on 127.0.0.1 (default 8080)")

    q = _sub(sub, "query", "SQL (DuckDB) over the Parquet results of a run or sweep", QUERY_TABLES + ".\n\n"
             "  rlp-tune query results/demo 'SELECT \"rlp.lam\", \"test.acc\" FROM final ORDER BY 1'")
    q.add_argument("root", metavar="DIR", help="a run folder (--out of train) or a sweep folder")
    q.add_argument("sql", help="one SQL statement over the views metrics, trials, final "
                               "(quote dotted columns: \"rlp.lam\")")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="output: an aligned table (default), CSV, or JSON records")
    a = _sub(sub, "analyze", "fit memorization / generalization curves with bootstrap CIs",
             "Logistic fit of random-label accuracy vs λ, spline of test accuracy and gap vs λ, their rank "
             "correlation and verdict, factor curves, layer profiles and onset epochs; "
             "each fit or 'not fitted: reason'.")
    a.add_argument("root", metavar="DIR", help="a run or sweep folder")
    a.add_argument("--json", action="store_true", help="print the whole analysis document as JSON")
    r = _sub(sub, "report", "write a self-contained HTML report", "Figures and the analysis in one folder.")
    r.add_argument("root", metavar="DIR", help="a run or sweep folder")
    r.add_argument("--out", required=True, help="folder for report.html and its figures (created)")
    for x in (a, r):
        x.add_argument("--boot", type=_nonneg_int, default=200, metavar="N",
                       help="bootstrap resamples per fit for the CIs (0: no CIs; default 200)")
        x.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
        x.add_argument("--at-epoch", type=_nonneg_int, default=None, metavar="E",
                       help="fit every trial's metrics at epoch E, leaving out trials that ended earlier "
                            "(default: each trial's last epoch)")
    pr = _sub(sub, "probe", "k-NN / linear / MASC / NCM probes on saved checkpoints",
              "Reads DIR/checkpoints/epoch_*.pt (train with run.keep_checkpoints = \"all\") or last.pt and "
              "adds rows (split test, metric <probe>_acc) to DIR's Parquet results.")
    pr.add_argument("root", metavar="DIR", help="a run folder (or a sweep trial folder trials/<id>)")
    pr.add_argument("--epochs", type=_epochs, default="all", help="comma list of checkpoint epochs, or 'all' (default)")
    pr.add_argument("--probes", default="knn,ncm",
                    help="comma list from knn, linear, masc, ncm, invariance (default knn,ncm)")
    pr.add_argument("--layers", default="penultimate",
                    help="comma list of taps (model tap names, 'input'), or 'all' (default penultimate)")
    pr.add_argument("--labels", choices=["clean", "train"], default=None,
                    help="fit the probes on the clean or the (noisy) training labels "
                         "(default: probe.labels of the run)")
    pr.add_argument("--set", action="append", default=[], metavar="probe.KEY=VALUE", dest="settings",
                    help="override a probe.* key of the run's config (k, masc_threshold, linear, max_train)")
    o = _sub(sub, "offline-rlp", "train fresh RLP heads on frozen saved checkpoints (paper 5.1)",
             "Adds rows split = offline, metric rand_acc per checkpoint epoch to DIR's Parquet results.")
    o.add_argument("root", metavar="DIR", help="a run folder trained with run.keep_checkpoints = \"all\"")
    o.add_argument("--head-epochs", type=_pos_int, default=None,
                   help="audit-head training epochs per checkpoint (default: the run's rlp.audit_epochs)")
    o.add_argument("--epochs", type=_epochs, default="all", help="comma list of checkpoint epochs, or 'all' (default)")
    p.commands = sub.choices   # name → subparser
    return p


def _version_line() -> str:
    from .provenance import package_version
    return (f"rlp-tune {__version__} (torch {package_version('torch') or '-'}, ray {package_version('ray') or '-'}, "
            f"optuna {package_version('optuna') or '-'})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """argparse, plus Hydra-style `key=value` words anywhere after `train` / `sweep` (they join --set)."""
    p = build_parser()
    args, extras = p.parse_known_args(argv)
    if getattr(args, "cmd", None) not in ("train", "sweep"):
        if extras:
            p.error(f"unrecognized arguments: {' '.join(extras)}")
        return args
    sub = p.commands[args.cmd]     # its own usage line in the error
    bad = [x for x in extras if not OVERRIDE.match(x)]
    if bad:
        sub.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like section.key=value)")
    positional = list(args.sets) + extras
    if args.cmd == "train" and args.config and "=" in args.config and not Path(args.config).is_file():
        positional.insert(0, args.config)     # `rlp-tune train rlp.lam=10`: overrides of the defaults
        args.config = None
    args.overrides = positional + list(args.overrides)
    if args.log is not None:
        args.overrides.append(f"logging.trackers={args.log}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cmd is None:   # `rlp-tune` alone: the overview, not an error
        build_parser().print_help()
        return 0
    try:
        if args.cmd not in READERS:
            return _dispatch(args)
        with _naming_left_out_files() as left:
            code = _dispatch(args)
        if left:
            print(f"rlp-tune: {len(left)} results file(s) left out (named above); the rest was read",
                  file=sys.stderr)
        return LEFT_OUT_EXIT if left and code == 0 else code
    except UserError as e:
        print(f"rlp-tune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlp-tune: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in STORAGE_FAULTS:
            raise
        print(f"rlp-tune: error: {fault_line(e)}; what was written before is whole: fix it and run the same "
              "command again to continue (a sweep: rlp-tune resume DIR)", file=sys.stderr)
        return FAULT_EXIT


# errnos of a write the disk or folder refused: full disk, quota, read-only, permissions, I/O
STORAGE_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def fault_line(e: OSError) -> str:
    """'<file>: <strerror>' of an OSError in one line (pyarrow's messages run over several)."""
    what = e.strerror or " ".join(str(e).split())
    return f"{e.filename}: {what}" if e.filename else what


READERS = ("status", "query", "analyze", "report", "dashboard")


@contextlib.contextmanager
def _naming_left_out_files():
    """Print each results file the reader left out as it is found, in one line (a ResultsWarning);
    yields the list of their messages. Other warnings go where they went."""
    left: list[str] = []
    shown = warnings.showwarning

    def show(message, category, *a, **k):
        if issubclass(category, ResultsWarning):
            left.append(str(message))
            print(f"rlp-tune: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *a, **k)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ResultsWarning)
        warnings.showwarning = show
        yield left


def _dispatch(args) -> int:
    if args.cmd == "keys":
        from .config import describe
        lines = describe().split("\n")
        print("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.startswith(args.prefix)]))
        return 0
    if args.cmd == "train":
        return cmd_train(args)
    if args.cmd in ("sweep", "resume", "status", "dashboard"):
        from .tune import cli as tune_cli
        return getattr(tune_cli, f"cmd_{args.cmd}")(args)
    if args.cmd == "query":
        from .analysis.query import run_query
        print(run_query(args.root, args.sql, args.format))
        return 0
    if args.cmd in ("analyze", "report"):
        from .reader import require_results
        require_results(args.root)                      # "no results in DIR", before any output
    if args.cmd == "analyze":
        import json

        from .analysis.document import analyze
        from .analysis.text import format_analysis
        doc = analyze(args.root, n_boot=args.boot, seed=args.seed, at_epoch=args.at_epoch)
        print(json.dumps(doc.to_dict(), indent=2) if args.json else format_analysis(doc))
        return 0
    if args.cmd == "report":
        from .analysis.report import write_report
        from .run.rundir import check_folder
        check_folder(args.out, "--out")
        print(write_report(args.root, args.out, n_boot=args.boot, seed=args.seed, at_epoch=args.at_epoch))
        return 0
    if args.cmd == "probe":
        from .run.checks import check_probe_names
        from .offline.probe import probe_checkpoints
        check_probe_names(args.probes.split(","), "--probes")
        layers = args.layers.split(",")
        probe_checkpoints(args.root, epochs=args.epochs, probes=args.probes.split(","),
                          layers=["all"] if layers == ["all"] else layers, labels=args.labels,
                          settings=args.settings)
        return 0
    if args.cmd == "offline-rlp":
        from .offline.rlp import offline_rlp
        offline_rlp(args.root, head_epochs=args.head_epochs, epochs=args.epochs)
        return 0
    raise AssertionError(args.cmd)


# overrides that say where or how to run, not what: they keep the default --out (a resume may change them)
ENVIRONMENT_KEYS = ("run.device", "run.threads", "run.compile", "run.eval_batch_size", "data.root", "data.workers")


def default_out(config: str | None, overrides: list[str]) -> Path:
    """runs/<config stem>, plus -<8 hex of the overrides> when there are overrides, so runs with
    different overrides never share a folder; environment keys (ENVIRONMENT_KEYS, logging.*) do not
    count, so `--set run.device=cuda` or `--log tensorboard` continues the same run."""
    import hashlib

    from .config import parse_overrides
    stem = Path(config).stem if config else "default"
    ov = {k: v for k, v in parse_overrides(overrides).items()
          if k not in ENVIRONMENT_KEYS and not k.startswith("logging.")}
    if not ov:
        return Path("runs") / stem
    text = "\n".join(f"{k}={ov[k]!r}" for k in sorted(ov))
    return Path("runs") / f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


RUN_ENTRIES = ("checkpoints", "parquet", "config.toml", "tracking")   # what `train` writes into --out


def fresh_run_dir(out: Path) -> list[str]:
    """--fresh: delete what rlp-tune wrote into OUT (nothing else), printing each entry; → the removed names."""
    import shutil
    removed = []
    for name in RUN_ENTRIES:
        p = out / name
        if not p.exists():
            continue
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        print(f"--fresh: deleting {p}{'/' if p.is_dir() else ''} ({size / 1e6:.1f} MB)", file=sys.stderr)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        removed.append(name)
    if not removed:
        print(f"--fresh: {out} holds no earlier run; nothing deleted", file=sys.stderr)
    return removed


def cmd_train(args) -> int:
    from .config import load_config, to_toml
    from .run.rundir import check_folder
    cfg = load_config(args.config, args.overrides)          # validated before any work
    from .run.trackers import check_available, open_trackers
    check_available(cfg.logging.trackers)                   # a missing tracker package: exit 2 before training
    out = Path(args.out) if args.out else default_out(args.config, args.overrides)
    check_folder(out, "--out")
    if not cfg.run.name:   # the folder's name is the run's trial id: a name, checked before any work
        from .names import check_name, default_trial_id
        check_name(f"--out {out}: its folder name is the trial id (or set run.name)", default_trial_id(out))
    if not args.out:
        print(f"output folder: {out} (--out to choose)", file=sys.stderr)
    from .run.train import Trainer
    if args.fresh and out.exists():
        fresh_run_dir(out)
    # the Trainer checks data sizes and memory, then locks the folder (made only now) and reads its checkpoint
    trainer = Trainer(cfg, out_dir=out, progress=not args.no_progress and sys.stderr.isatty())
    if not trainer.finished and trainer.epoch < cfg.run.epochs:   # config.toml describes the run only if it trains
        from .provenance import toml_table
        from .results import versions
        (out / "config.toml").write_text(to_toml(cfg) + toml_table({**versions(), **trainer.trial_extra}))
    sinks = open_trackers(cfg, out, trainer.trial_id) if trainer.rank == 0 else None
    try:
        last = _train_loop(trainer, cfg, sinks)
    except BaseException:
        if sinks:
            sinks.close("KILLED")
        raise
    if sinks:
        sinks.close("FINISHED")
    print(summary(trainer, last, time.time() - trainer.t0, out))
    return 0


def _train_loop(trainer, cfg, sinks):
    start_epoch, out = trainer.epoch, trainer.out_dir
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
        if sinks:
            sinks.log(rec.epoch, rec.flat())
    return last


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
              f"checkpoint: {out / 'checkpoints' / 'last.pt'}"
              + (f"\nweights: {out / 'checkpoints' / 'model.pt'}  (rlp_tune.load_run(\"{out}\"))"
                 if (out / 'checkpoints' / 'model.pt').exists() else "")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
