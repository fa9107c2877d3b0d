"""Commands on a finished run's saved checkpoints, without training: `rlp-tune probe DIR` (probe.py)
and `rlp-tune offline-rlp DIR` (rlp.py). Both rebuild the frozen net with `net.build_net` from each
checkpoint (`checkpoint.read_checkpoint`, frozen.py) and add rows to the run's Parquet results.
"""
