"""rlp_tune: memorization-vs-generalization sweeps with random label prediction heads (RLP-heads) on Ray.

    from rlp_tune.config import load_config
    from rlp_tune.train import Trainer
    for record in Trainer(load_config("configs/digits_mlp.toml")).fit():
        print(record.epoch, record.metric("test", "acc"))
"""
__version__ = "0.1.0"
