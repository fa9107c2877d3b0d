"""Every use of Ray's internals in rlp_tune, in one place. Written against Ray 2.60.0 (RAY_WRITTEN_FOR).

    from rlp_tune.tune._ray_compat import loopback_only, node_ip_kwargs, add_callbacks_on_restore
    loopback_only(); ray.init(num_cpus=2, **node_ip_kwargs("127.0.0.1"))
    tuner = tune.Tuner.restore(root, trainable); add_callbacks_on_restore(tuner, [cb]); tuner.fit()
    state = newest_experiment_state(root); ids = trial_ids_in_state(state)   # None: format unknown
    trials = trials_in_state(state.read_text())   # {trial_id: (config, status)}
    for s in reversed(state_sessions(root)): session_problem(root, s)       # None: Tune can restore it

Each function below is here because Ray 2.60 has no public door for what it does (the installed
source was searched; the reason is written at each). tests/test_ray_compat.py checks every one
against the installed Ray, so an upgrade that breaks one fails there, not in a sweep. pyproject
pins ray to the range these were checked on; widen it only after that test file passes on the new
version (and update RAY_WRITTEN_FOR). Nothing else under rlp_tune/ may touch a private Ray name.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RAY_WRITTEN_FOR = "2.60.0"


def loopback_only() -> None:
    """Make an embedded (single-machine) Ray advertise 127.0.0.1, not the interface address.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, into `ray._private.ray_constants.ENABLE_RAY_CLUSTER`,
    when it is imported; the environment variable reaches the processes Ray starts, the module
    constant covers a Ray imported already (no public setting exists). It also keeps other
    machines from joining, which is what an embedded cluster wants."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False


def node_ip_kwargs(ip: str) -> dict[str, str]:
    """`ray.init(**node_ip_kwargs("127.0.0.1"))`: the address the started head node binds and advertises.
    `ray.init` takes it only as the underscore argument `_node_ip_address` (the CLI's `ray start
    --node-ip-address` has no ray.init twin)."""
    return {"_node_ip_address": ip}


def add_callbacks_on_restore(tuner, callbacks) -> None:
    """Add callbacks to a tuner made by `tune.Tuner.restore` before its `fit()`.

    A restored tuner runs with the RunConfig pickled at the first start (callbacks included) and
    `Tuner.restore` takes no run_config, so this appends to the restored one held by the tuner's
    TunerInternal (`tuner._local_tuner`). Under Ray Client that object lives remotely: refused."""
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        raise RuntimeError("add_callbacks_on_restore: this Tuner has no local TunerInternal (Ray Client mode?)")
    run_config = local.get_run_config()
    if run_config.callbacks is None:
        run_config.callbacks = []
    run_config.callbacks.extend(callbacks)


def newest_experiment_state(root: str | os.PathLike) -> Path | None:
    """The newest `experiment_state-<timestamp>.json` Tune saved in a local experiment folder, or None.

    Tune's controller writes one such file per driver session (TuneController.CKPT_FILE_TMPL) and
    restores from the newest; the timestamps sort as text. Only `tune.ExperimentAnalysis` reads it
    publicly, and that also loads every trial's result files."""
    states = sorted(Path(root).glob("experiment_state-*.json"))
    return states[-1] if states else None


def read_newest_experiment_state(root: str) -> tuple[str, str | None] | None:
    """(path, text) of the newest experiment state in an experiment folder, local or a URI (through
    pyarrow.fs); text None when the file cannot be read, None when there is none. Raises OSError
    when the folder cannot be listed."""
    from pyarrow import fs as pafs

    from ..storage import filesystem
    fs, base = filesystem(root)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    states = sorted(i.path for i in infos if i.base_name.startswith("experiment_state-") and i.path.endswith(".json"))
    if not states:
        return None
    try:
        with fs.open_input_stream(states[-1]) as f:
            return states[-1], f.read().decode()
    except (OSError, UnicodeDecodeError):
        return states[-1], None


# The files Tune's controller saves per driver session (TuneController.save_to_dir: the experiment
# state, the search algorithm's — SearchGenerator + Searcher, or BasicVariantGenerator — and the
# callbacks'), named by the session (each class's CKPT_FILE_TMPL).
STATE_FILE_KINDS = (("experiment_state-", ".json"), ("search_gen_state-", ".json"), ("searcher-state-", ".pkl"),
                    ("basic-variant-state-", ".json"), ("callback-states-", ".pkl"))


def state_sessions(root: str | os.PathLike) -> list[str]:
    """The driver sessions that saved an experiment state in a local experiment folder, oldest first."""
    return [p.name[len("experiment_state-"):-len(".json")] for p in sorted(Path(root).glob("experiment_state-*.json"))]


def session_files(root: str | os.PathLike, session: str) -> list[Path]:
    """The state files a session saved (those that exist)."""
    return [p for pre, ext in STATE_FILE_KINDS if (p := Path(root, f"{pre}{session}{ext}")).exists()]


def session_problem(root: str | os.PathLike, session: str) -> str | None:
    """Why Tune could not restore from `session`'s state files, or None when it can.

    Tune writes the files in a local staging folder, then copies them into the experiment folder in
    a background thread; the copy is not atomic, so a driver killed during it leaves a truncated
    file, or the new experiment state beside an older session's searcher state. Tune then fails to
    restore, logs it, and silently starts the experiment afresh without its param space. A session
    can be restored when its experiment state parses with trials in Ray 2.60's layout and it has
    every kind of state file an earlier session had, each whole: its pickle's opcodes run to their
    STOP (Tune's `_atomic_save` cloudpickles them all, the ".json" ones too; pickletools walks the
    opcodes and unpickles nothing, so a crafted file in the sweep folder runs no code here)."""
    exp = Path(root, f"experiment_state-{session}.json")
    try:
        if not trials_in_state(exp.read_text()):
            return f"{exp.name} holds no trial in Ray {RAY_WRITTEN_FOR}'s layout"
    except (OSError, UnicodeDecodeError) as e:
        return f"{exp.name}: {e}"
    for pre, ext in STATE_FILE_KINDS[1:]:
        f = Path(root, f"{pre}{session}{ext}")
        if not f.exists():
            if any(Path(root).glob(f"{pre}*{ext}")):     # another session saved this kind
                return f"{f.name} is missing (an earlier session saved one)"
            continue
        problem = _cut(f)
        if problem:
            return f"{f.name} cannot be loaded ({problem})"
    return None


def _cut(f: Path) -> str | None:
    """Why a pickled state file is not whole (empty, cut before its STOP), or None; runs nothing."""
    import pickletools
    try:
        data = f.read_bytes()
        if not data:
            return "empty"
        for _ in pickletools.genops(data):   # raises on a pickle cut before its STOP
            pass
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def checkpoint_paths_in_state(text: str) -> list[str]:
    """The checkpoint folders (paths inside the storage's filesystem) that an experiment-state text's
    trials name: each trial's `run_metadata.checkpoint_manager` is a cloudpickle (hex) whose strings
    include them. Read with pickletools: the pickle's opcodes are walked, nothing is unpickled."""
    import pickletools
    import re
    out: list[str] = []
    try:
        for _, meta in json.loads(text).get("trial_data", []):
            cm = (json.loads(meta) if isinstance(meta, str) else meta).get("checkpoint_manager") or {}
            data = bytes.fromhex(cm.get("value", "")) if isinstance(cm, dict) else b""
            out += [arg for _, arg, _ in pickletools.genops(data)
                    if isinstance(arg, str) and "/" in arg and re.search(r"/checkpoint_\d{6}$", arg)]
    except (ValueError, TypeError, AttributeError):   # another layout: nothing to mend
        return []
    return sorted(set(out))


def trial_ids_in_state(state: str | os.PathLike) -> set[str] | None:
    """Trial ids an experiment-state file records (those a restore continues); None when the file
    cannot be read or its layout is not Ray 2.60's (see `trials_in_state`)."""
    try:
        text = Path(state).read_text()
    except OSError:
        return None
    trials = trials_in_state(text)
    return None if trials is None else set(trials)


def trials_in_state(text: str) -> dict[str, tuple[dict, str]] | None:
    """{trial_id: (config, status)} from the text of an experiment-state file; None when its layout
    is not Ray 2.60's: {"trial_data": [[trial_json, runtime_json], …]}, trial_json a JSON string
    with "trial_id", "config" (the trial's resolved config) and "status" (Trial.__getstate__)."""
    try:
        out = {}
        for t in json.loads(text).get("trial_data", []):
            state = json.loads(t[0] if isinstance(t, list) else t)
            out[state["trial_id"]] = (dict(state.get("config") or {}), str(state.get("status", "")))
        return out
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def check_cluster_config(raw: dict) -> dict:
    """Ray's own checks of a cluster-launcher YAML (`ray up`): defaults filled in, then ray-schema.json
    and node-type consistency; raises jsonschema.ValidationError / ValueError. `ray up` runs them
    from ray.autoscaler._private.util; there is no public entry point. Returns the prepared config."""
    import copy

    from ray.autoscaler._private.util import prepare_config, validate_config
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg
