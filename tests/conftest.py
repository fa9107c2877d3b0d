import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# local test clusters advertise 127.0.0.1 only (read by Ray at import time)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def handlers():
    """Restore the process's SIGUSR1/SIGTERM/SIGINT handlers after a test (stop-request tests)."""
    import signal
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture
def tiny_cfg():
    """A seconds-long config: MLP on digits, one RLP head."""
    from rlp_tune.config import Config
    return Config().replace(**{
        "data.name": "digits", "model.name": "mlp", "model.width": 64, "model.depth": 2,
        "rlp.n": 16, "rlp.heads": 1, "optim.lr": 0.05, "run.epochs": 2, "run.batch_size": 128,
        "run.device": "cpu",
    })


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint on 127.0.0.1 (moto's server, tests/s3server.py) that pyarrow — and a Ray
    trial process started afterwards — reach through AWS_ENDPOINT_URL. Yields a function making a
    fresh bucket: `s3_endpoint()` -> "s3://<bucket>"."""
    pytest.importorskip("moto")
    import s3server
    with s3server.running() as bucket:
        yield bucket
