"""rlp_tune: memorization-vs-generalization sweeps with random label prediction heads (RLP-heads) on Ray.

    from rlp_tune.config import load_config
    from rlp_tune.run.train import Trainer
    for record in Trainer(load_config("configs/digits_mlp.toml"), out_dir="runs/x").fit():
        print(record.epoch, record.get("test", "acc"), record.get("train", "rand_acc", layer="penultimate"))

    import rlp_tune
    run = rlp_tune.load_run("runs/x")      # config + model with weights (rlp_tune/run/load.py)
    logits = run.predict(x)

The command line is `rlp-tune` (rlp_tune/cli.py; `rlp-tune --help`).
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy: `import rlp_tune` stays cheap (the CLI imports torch only for commands that need it)
    if name in ("load_run", "LoadedRun"):
        from .run import load
        return getattr(load, name)
    raise AttributeError(f"module 'rlp_tune' has no attribute {name!r}")
