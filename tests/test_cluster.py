"""Cluster launch recipes (cluster/) and the clean stop of a sweep driver (rlp_tune/tune/signals.py).

No cluster is started here (tests/test_slurm.py runs the SLURM recipe end to end):
* signals: a stop signal is recorded, forwarded to Tune's own handler once Tune runs, and turned
  into the exit code; the pid and stop files of the SLURM script;
* cloud: cluster/cloud/aws.yaml passes Ray's own cluster-config checks (ray-schema.json);
* kubernetes: cluster/kubernetes/rayjob.yaml against the subset of KubeRay's RayJob v1 schema it
  uses (field names and types from KubeRay's CRD reference), and for consistency with the project
  (Ray version, token auth, volumes, the search space it runs);
* slurm: the sbatch script's bash syntax, its #SBATCH defaults and its input checks.
"""
import copy
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from rlp_tune.tune.signals import INTERRUPTED_EXIT, RESUME_EXIT, StopRequest
from rlp_tune.tune.space import load_space

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


# ---- signals ---------------------------------------------------------------------------------------
def test_stop_signal_is_recorded_not_fatal(tmp_path, handlers):
    before = signal.getsignal(signal.SIGUSR1)
    pidfile = tmp_path / "run" / "driver.pid"
    stop = StopRequest(pidfile=str(pidfile), stopfile=str(tmp_path / "stop")).install()
    assert pidfile.read_text().strip() == str(os.getpid()) and not stop.requested
    os.kill(os.getpid(), signal.SIGUSR1)          # default action would end this process
    assert stop.signame == "SIGUSR1"
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signame == "SIGUSR1"               # the first one counts
    assert stop.exit_code() == RESUME_EXIT
    stop.uninstall()
    assert not pidfile.exists() and signal.getsignal(signal.SIGUSR1) == before


def test_stop_file_counts_as_a_request(tmp_path, handlers):
    (tmp_path / "stop").touch()                    # the job script asked before the pid file existed
    stop = StopRequest(pidfile="", stopfile=str(tmp_path / "stop")).install()
    assert stop.signame == "stopfile" and stop.exit_code() == RESUME_EXIT
    stop.uninstall()
    assert StopRequest(pidfile="", stopfile=str(tmp_path / "absent")).install().requested is False


def test_env_names_the_pid_and_stop_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RLP_TUNE_PIDFILE", str(tmp_path / "p"))
    monkeypatch.setenv("RLP_TUNE_STOPFILE", str(tmp_path / "s"))
    s = StopRequest()
    assert (s.pidfile, s.stopfile) == (str(tmp_path / "p"), str(tmp_path / "s"))


def test_signals_reach_tunes_handler_once_tune_runs(handlers):
    """Tune installs its handler for SIGINT/SIGUSR1 when the run starts (tune.py); attach_to_tune
    (called from the callback's setup) routes SIGUSR1 and SIGTERM to it, and hands over a request
    that came before Tune started."""
    calls = []

    def tune_handler(sig, frame):                  # what ray.tune.tune._setup_signal_catching installs
        calls.append(sig)

    stop = StopRequest(pidfile="", stopfile="").install()
    os.kill(os.getpid(), signal.SIGUSR1)           # before Tune: only recorded
    assert stop.requested and calls == []
    signal.signal(signal.SIGUSR1, tune_handler)    # Tune starts and takes SIGUSR1 and SIGINT
    signal.signal(signal.SIGINT, tune_handler)
    stop.attach_to_tune()
    assert calls == [signal.SIGINT]                # the early request reached Tune at once
    os.kill(os.getpid(), signal.SIGTERM)
    assert len(calls) == 2 and stop.signame == "SIGUSR1"
    stop.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_tune_exits_130(handlers):
    calls = []
    stop = StopRequest(pidfile="", stopfile="").install()
    signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    signal.signal(signal.SIGINT, signal.getsignal(signal.SIGUSR1))
    stop.attach_to_tune()
    os.kill(os.getpid(), signal.SIGINT)
    assert calls and stop.signame == "SIGINT" and stop.exit_code() == INTERRUPTED_EXIT
    stop.uninstall()


def test_exit_code_when_complete_or_not_asked():
    stop = StopRequest(pidfile="", stopfile="")
    assert stop.exit_code(complete=False) == 0      # nobody asked
    stop.signame = "SIGTERM"
    assert stop.exit_code(complete=False) == RESUME_EXIT
    assert stop.exit_code(complete=True) == 0       # a signal after the last trial ended changes nothing


def test_callback_tracks_completion_and_pickles_without_the_request():
    import ray.cloudpickle as cloudpickle
    from ray.tune.experiment import Trial

    class T:   # the only Trial API the callback uses
        def __init__(self, status):
            self.status = status

        is_finished = Trial.is_finished

    stop = StopRequest(pidfile="", stopfile="")
    cb = stop.callback(expected_trials=2)
    cb.on_step_end(iteration=1, trials=[T("TERMINATED")])
    assert stop.complete is False                  # one of two trials exists
    cb.on_step_end(iteration=2, trials=[T("TERMINATED"), T("RUNNING")])
    assert stop.complete is False
    cb.on_step_end(iteration=3, trials=[T("TERMINATED"), T("ERROR")])
    assert stop.complete is True
    stop.install()                                 # holds signal handlers now: the callback does not
    try:
        back = cloudpickle.loads(cloudpickle.dumps(cb))    # Tune pickles the run config into tuner.pkl
        assert type(back) is type(cb) and back.key == cb.key and vars(back).keys() == vars(cb).keys()
        assert len(cloudpickle.dumps(cb)) < 400                  # a number and the budget, nothing else
    finally:
        stop.uninstall()


def test_space_of_a_uri_sweep_folder(tmp_path):
    from rlp_tune.tune.space import space_path
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "space.toml").write_text("# stored\n")
    local = space_path(f"file://{tmp_path}/s")
    assert Path(local).read_text() == "# stored\n" and not local.startswith(str(tmp_path))
    from rlp_tune.errors import UserError
    with pytest.raises(UserError, match="not a sweep folder"):   # one line and exit 2 from the CLI
        space_path(f"file://{tmp_path}/absent")
    with pytest.raises(UserError, match="not a sweep folder"):
        space_path(str(tmp_path / "absent"))


# ---- cloud: Ray's cluster launcher ------------------------------------------------------------------
def check_cluster_config(raw: dict) -> dict:
    """Ray's own checks of a cluster-launcher YAML, as `ray up` runs them (defaults filled in, then
    ray-schema.json and node-type consistency; there is no public entry point, so this test reaches
    into ray.autoscaler._private.util; the package itself never does)."""
    from ray.autoscaler._private.util import prepare_config, validate_config
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg


def test_cloud_yaml_passes_rays_cluster_config_checks():
    raw = yaml.safe_load((CLUSTER / "cloud" / "aws.yaml").read_text())
    check_cluster_config(raw)                              # ray-schema.json + node-type consistency
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["head"]["node_confg"] = broken["available_node_types"]["head"].pop("node_config")
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        check_cluster_config(broken)                       # the check does catch a misspelt key


def test_cloud_yaml_keeps_token_auth_and_a_local_dashboard():
    cfg = yaml.safe_load((CLUSTER / "cloud" / "aws.yaml").read_text())
    head, worker = " ".join(cfg["head_start_ray_commands"]), " ".join(cfg["worker_start_ray_commands"])
    for cmd in (head, worker):
        assert "RAY_AUTH_MODE=token" in cmd and "RAY_USAGE_STATS_ENABLED=0" in cmd
    assert "--dashboard-host=127.0.0.1" in head
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}   # driver only


# ---- kubernetes: KubeRay RayJob ---------------------------------------------------------------------
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD = {   # PodTemplateSpec, only as deep as the project's manifest goes
    "type": "object", "required": ["spec"], "additionalProperties": False,
    "properties": {"metadata": {"type": "object"}, "spec": {
        "type": "object", "required": ["containers"],
        "properties": {"volumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                       "containers": {"type": "array", "minItems": 1, "items": {
                           "type": "object", "required": ["name", "image"],
                           "properties": {"name": {"type": "string"}, "image": {"type": "string"},
                                          "env": {"type": "array", "items": {
                                              "type": "object", "required": ["name"],
                                              "properties": {"name": {"type": "string"},
                                                             "value": {"type": "string"}}}},
                                          "resources": {"type": "object", "additionalProperties": False,
                                                        "properties": {"requests": _STR_MAP,
                                                                       "limits": _STR_MAP}},
                                          "volumeMounts": {"type": "array", "items": {
                                              "type": "object", "required": ["name", "mountPath"]}}}}}}}}}
# RayJob v1 fields used here, names and types as in KubeRay's CRD (ray.io_rayjobs.yaml, v1.5+);
# additionalProperties false: a misspelt or invented field fails
RAYJOB_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "additionalProperties": False,
                 "properties": {
                     "entrypoint": {"type": "string"},
                     "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"]},
                     "backoffLimit": {"type": "integer", "minimum": 0},
                     "shutdownAfterJobFinishes": {"type": "boolean"},
                     "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                     "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                     "rayClusterSpec": {
                         "type": "object", "required": ["headGroupSpec"], "additionalProperties": False,
                         "properties": {
                             "rayVersion": {"type": "string"},
                             "authOptions": {"type": "object", "additionalProperties": False,
                                             "properties": {"mode": {"enum": ["disabled", "token"]},
                                                            "secretName": {"type": "string"}}},
                             "enableInTreeAutoscaling": {"type": "boolean"},
                             "headGroupSpec": {"type": "object", "required": ["template"],
                                               "additionalProperties": False,
                                               "properties": {"rayStartParams": _STR_MAP, "template": _POD,
                                                              "serviceType": {"type": "string"}}},
                             "workerGroupSpecs": {"type": "array", "items": {
                                 "type": "object", "required": ["groupName", "template"],
                                 "additionalProperties": False,
                                 "properties": {"groupName": {"type": "string"},
                                                "replicas": {"type": "integer", "minimum": 0},
                                                "minReplicas": {"type": "integer", "minimum": 0},
                                                "maxReplicas": {"type": "integer", "minimum": 0},
                                                "rayStartParams": _STR_MAP, "template": _POD}}}}}}}}}


def _k8s_docs():
    docs = [d for d in yaml.safe_load_all((CLUSTER / "kubernetes" / "rayjob.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_rayjob_matches_kuberays_schema_subset():
    job = _k8s_docs()["RayJob"]
    jsonschema.validate(job, RAYJOB_SCHEMA)
    bad = copy.deepcopy(job)
    bad["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0   # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RAYJOB_SCHEMA)


def test_rayjob_is_consistent_with_the_project():
    import ray
    docs = _k8s_docs()
    job, pvc = docs["RayJob"], docs["PersistentVolumeClaim"]
    rc = job["spec"]["rayClusterSpec"]
    assert rc["rayVersion"] == ray.__version__ and rc["authOptions"]["mode"] == "token"
    groups = [rc["headGroupSpec"]] + rc["workerGroupSpecs"]
    for g in groups:
        pod = g["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert claims["results"] == pvc["metadata"]["name"] and mounts["results"] == "/results"
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        assert env.get("RAY_USAGE_STATS_ENABLED") == "0"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    # the entrypoint: resume when the sweep folder exists, else a sweep of a shipped space
    entry = job["spec"]["entrypoint"]
    inner = shlex.split(entry)[2]
    sweep = re.search(r"rlp-tune sweep (\S+) (.*?);", inner)
    folder = re.search(r"\[ -f (\S+)/space.toml \]", inner).group(1)
    assert f"rlp-tune resume {folder} --address auto" in inner
    space_file = ROOT / Path(sweep.group(1)).relative_to("/app")
    args = shlex.split(sweep.group(2))
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    space = load_space(space_file, overrides)             # the space exists and the overrides are valid keys
    storage = args[args.index("--storage") + 1]
    assert folder == f"{storage}/{space.name}"
    # a worker pod holds one trial's resources
    worker = rc["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(worker["nvidia.com/gpu"]) == space.gpus_per_worker * space.workers_per_trial
    assert int(worker["cpu"]) >= space.cpus_per_trial()


def test_dockerfile_uses_the_projects_ray():
    import ray
    text = (CLUSTER / "kubernetes" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray.__version__)}-py3\d+", text, re.M)


# ---- slurm: the scripts, statically and their input checks -----------------------------------------
SLURM = CLUSTER / "slurm"
SBATCH = SLURM / "sweep.sbatch"
CHAINS = ["sweep.sbatch", "head.sbatch"]          # the jobs that requeue themselves


def _opts(script: Path) -> dict:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", script.read_text(), re.M))


@pytest.mark.parametrize("name", CHAINS)
def test_sbatch_script_syntax_and_defaults(name):
    assert subprocess.run(["bash", "-n", str(SLURM / name)]).returncode == 0
    opts = _opts(SLURM / name)
    assert re.fullmatch(r"B:USR1@\d+", opts["signal"])      # the warning goes to the script (B:)
    assert "requeue" in opts and opts["open-mode"] == "append"


def test_worker_script_syntax_and_defaults():
    for f in ("worker.sbatch", "common.sh"):
        assert subprocess.run(["bash", "-n", str(SLURM / f)]).returncode == 0, f
    opts = _opts(SLURM / "worker.sbatch")
    assert "no-requeue" in opts and "requeue" not in opts and "signal" not in opts   # it leaves with its head
    assert "gres" not in opts        # the GPU request is head.sbatch's RLP_WORKER_SBATCH (tests override it)


def test_shared_recipe_never_runs_ray_stop():
    """`ray stop` ends every Ray of the user on the node, other jobs' too: the shared-cluster recipe ends
    its own Ray by pid only."""
    for f in ("head.sbatch", "worker.sbatch", "common.sh"):
        code = [re.sub(r"(^|\s)#.*$", "", line) for line in (SLURM / f).read_text().splitlines()]
        assert not [c for c in code if re.search(r"\bray\s+stop\b", c)], f
        assert not [c for c in code if re.search(r"\b(pkill|killall)\b", c)], f


def _run_script(args, script=SBATCH, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(["bash", str(script), *args], env={**base, **env}, capture_output=True, text=True,
                          cwd=ROOT)


@pytest.mark.parametrize("name", CHAINS)
def test_sbatch_script_input_checks(tmp_path, name):
    script = SLURM / name
    r = _run_script(["search_spaces/demo.toml"], script)
    assert r.returncode != 0 and "runs under SLURM" in r.stderr          # not inside a job
    r = _run_script([], script, SLURM_JOB_ID="1")
    assert r.returncode == 2 and r.stderr.startswith(f"usage: sbatch cluster/slurm/{name}")
    r = _run_script(["search_spaces/demo.toml", "--storage", "/x"], script, SLURM_JOB_ID="1")
    assert r.returncode == 2 and "RLP_STORAGE" in r.stderr
    r = _run_script(["search_spaces/demo.toml"], script, SLURM_JOB_ID="1", RLP_VENV=str(tmp_path))
    assert r.returncode == 2 and "has no rlp-tune or ray" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[search]\n"rlp.lamda" = { dist = "uniform", low = 0, high = 1 }\n')
    r = _run_script([str(bad)], script, SLURM_JOB_ID="1", RLP_VENV=sys.prefix, RLP_STORAGE=str(tmp_path / "res"))
    assert r.returncode == 2 and "rlp.lamda" in r.stderr and r.stderr.startswith(f"{name}: ")
    assert not (tmp_path / "res").exists()                              # nothing made, nothing submitted


def test_head_script_checks_its_workers_setting(tmp_path):
    r = _run_script(["search_spaces/demo.toml"], SLURM / "head.sbatch", SLURM_JOB_ID="1", RLP_WORKERS="0",
                    RLP_VENV=sys.prefix, RLP_STORAGE=str(tmp_path / "res"))
    assert r.returncode == 2 and "RLP_WORKERS=0" in r.stderr and not (tmp_path / "res").exists()


def test_worker_script_input_checks(tmp_path):
    worker = SLURM / "worker.sbatch"
    r = _run_script([], worker, SLURM_JOB_ID="7")
    assert r.returncode == 2 and r.stderr.startswith("usage: sbatch cluster/slurm/worker.sbatch")
    gen = tmp_path / "sweep" / ".slurm" / "5.0"
    gen.mkdir(parents=True)
    (gen / "done").touch()                  # its head finished before this worker started: nothing to do
    r = _run_script([str(gen)], worker, SLURM_JOB_ID="7", RLP_VENV=sys.prefix)
    assert r.returncode == 0, r.stderr
    assert "job=7 restart=0 worker of head 5.0: its sweep had ended" in (tmp_path / "sweep" / "slurm_jobs.log").read_text()
    assert not list(gen.glob("joined.*"))
