# What the SLURM job scripts share (sourced by sweep.sbatch, head.sbatch and worker.sbatch, never run).
#
# A job script runs from a spooled copy, so it sources this file from the submit directory:
#     . cluster/slurm/common.sh        (after `cd "$SLURM_SUBMIT_DIR"`: submit from the repository root)
# The script names itself in RLP_SCRIPT (under sbatch, $0 is the spooled copy). Functions set global
# variables (named in each one's comment) rather than printing them, so that `exit` inside them ends
# the job with the right code. cluster/slurm/README.md describes the recipes.

# rlp_refuse_args ARGS...: the scripts choose --storage, --name and --address themselves
rlp_refuse_args() {
    local a
    for a in "$@"; do
        case "$a" in
            --storage*|--name*|--address*)
                echo "$RLP_SCRIPT: set RLP_STORAGE / RLP_NAME instead of $a (the script chooses the address)" >&2
                exit 2 ;;
        esac
    done
}

# rlp_use_venv: PATH and Ray's environment from RLP_VENV (default ./.venv); sets VENV
rlp_use_venv() {
    VENV=${RLP_VENV:-$PWD/.venv}
    if [ ! -x "$VENV/bin/rlp-tune" ] || [ ! -x "$VENV/bin/ray" ]; then
        echo "$RLP_SCRIPT: $VENV/bin has no rlp-tune or ray (set RLP_VENV to the project's venv)" >&2
        exit 2
    fi
    export PATH="$VENV/bin:$PATH"                 # symmetric-run calls a bare `ray start` / `ray stop`
    export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
    export RAY_AUTH_MODE=token                    # token authentication stays on
}

# rlp_sweep_folder SPACE ARGS...: the sweep's folder; a bad space file or --set key ends the job here
# (exit 2, one line), before any allocation is spent on Ray. Sets STORAGE NAME SWEEP JOBLOG RESTART.
rlp_sweep_folder() {
    STORAGE=$(realpath -m "${RLP_STORAGE:-results}")
    NAME=${RLP_NAME:-$(python - "$RLP_SCRIPT" "$@" <<'PY'
import sys
from rlp_tune.tune.space import SpaceError, load_space
script, space, args = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    print(load_space(space, [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set"]).name)
except SpaceError as e:
    sys.exit(f"{script}: {space}: {e}")
PY
)} || exit 2
    SWEEP=$STORAGE/$NAME
    mkdir -p "$SWEEP" || exit 2
    JOBLOG=$SWEEP/slurm_jobs.log
    RESTART=${SLURM_RESTART_COUNT:-0}
}

# log WORDS...: one line to the job's output and to SWEEP/slurm_jobs.log
log() { echo "$(date -Is) job=${SLURM_JOB_ID} restart=$RESTART $*" | tee -a "$JOBLOG"; }

# rlp_token: one Ray token per sweep, readable by this user only, on the shared filesystem; every
# Ray node and the driver read it (RAY_AUTH_TOKEN_PATH)
rlp_token() {
    export RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$SWEEP/.ray_auth_token}
    if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
        (umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH") || exit 2
    fi
}

# rlp_driver_cmd SPACE [--address ADDR] -- ARGS...: `rlp-tune sweep` the first time, `rlp-tune resume`
# once the sweep folder holds space.toml. --verbose: a job log is a file, not a terminal (a line per
# trial epoch and per trial end, not the live progress line). Sets MODE CMD. (An empty array is
# written ${a[@]+"${a[@]}"}: bash before 4.4 calls "${a[@]}" unbound under `set -u`.)
rlp_driver_cmd() {
    local space=$1 at=()
    shift
    if [ "$1" = --address ]; then at=(--address "$2"); shift 2; fi
    shift                                         # --
    if [ -f "$SWEEP/space.toml" ]; then
        MODE=resume
        CMD=(rlp-tune resume "$SWEEP" ${at[@]+"${at[@]}"} --verbose)
    else
        MODE=sweep
        CMD=(rlp-tune sweep "$space" --storage "$STORAGE" --name "$NAME" ${at[@]+"${at[@]}"} --verbose "$@")
    fi
}

# rlp_traps: SIGUSR1 (the wall-time warning, --signal=B:USR1@N) and SIGTERM (scancel) are passed to the
# driver once it runs, which stops cleanly (rlp_tune/tune/signals.py); before that they are kept in
# the stop file, which the driver reads when it starts (both files in RUN_DIR, below the sweep
# folder). Sets RUN_DIR STOP_SIG STEP.
rlp_traps() {
    RUN_DIR=$SWEEP/.slurm/driver.$SLURM_JOB_ID.$RESTART    # the sweep's: unique even where job ids repeat
    mkdir -p "$RUN_DIR" || exit 2
    export RLP_TUNE_PIDFILE=$RUN_DIR/driver.pid RLP_TUNE_STOPFILE=$RUN_DIR/stop
    STOP_SIG="" STEP=""
    trap 'rlp_on_signal USR1' USR1
    trap 'rlp_on_signal TERM' TERM
}

rlp_on_signal() {
    [ -n "$STOP_SIG" ] || STOP_SIG=$1
    log "SIG$1: asking the sweep driver to stop cleanly"
    : > "$RLP_TUNE_STOPFILE"
    if [ -n "$STEP" ] && [ -s "$RLP_TUNE_PIDFILE" ] && kill -0 "$STEP" 2>/dev/null; then
        kill -USR1 "$(cat "$RLP_TUNE_PIDFILE")" 2>/dev/null
    fi
}

# rlp_wait PID: its exit code in RC (`wait` returns early when a trapped signal arrives: wait again)
rlp_wait() {
    while :; do
        wait "$1"; RC=$?
        kill -0 "$1" 2>/dev/null || break
    done
    wait "$1"; RC=$?                  # the exit code itself, not the signal that interrupted `wait`
}

# rlp_end RC: end the job by the driver's exit code; 3 after the wall-time warning requeues it
# (`scontrol requeue`: same job id, same options; the next allocation resumes the sweep)
rlp_end() {
    rm -rf "$RUN_DIR"
    case "$1" in
    0)  log "end rc=0 finished"
        exit 0 ;;
    3)  if [ "$STOP_SIG" = TERM ]; then
            log "end rc=3 stopped (SIGTERM: cancelled, not requeued; sbatch the same command to resume)"
            exit 3
        fi
        if [ -z "$STOP_SIG" ]; then     # the driver stopped by itself: the space's [sweep] time_budget
            log "end rc=3 stopped by the sweep's time_budget; not requeued (sbatch the same command to resume)"
            exit 3
        fi
        if [ "$RESTART" -ge "${RLP_MAX_REQUEUES:-50}" ]; then
            log "end rc=3 stopped; not requeued: $RESTART requeues already (RLP_MAX_REQUEUES)"
            exit 3
        fi
        log "end rc=3 stopped for wall time; requeue"
        trap - USR1 TERM
        if ! scontrol requeue "$SLURM_JOB_ID"; then
            log "scontrol requeue failed: sbatch the same command to resume"
            exit 3
        fi
        sleep 300 & wait $!              # the requeue ends this script
        exit 3 ;;
    *)  log "end rc=$1 failed (see this job's output); not requeued"
        exit "$1" ;;
    esac
}

# rlp_ray_start DIR ARGS...: `ray start ARGS --temp-dir=DIR --block` in the background, its output in
# DIR/ray_start.out. Sets RAY_PID and RAY_DIR.
rlp_ray_start() {
    RAY_DIR=$1
    shift
    mkdir -p "$RAY_DIR" || return 1
    rm -f "$RAY_DIR/ray_current_cluster"          # an earlier allocation's, on this node
    # shellcheck disable=SC2086  # RLP_RAY_START_ARGS: words for `ray start`
    ray start "$@" --temp-dir="$RAY_DIR" --block ${RLP_RAY_START_ARGS:-} > "$RAY_DIR/ray_start.out" 2>&1 &
    RAY_PID=$!
}

# rlp_ray_started: 0 once the node has registered with the cluster (ray start then writes the
# cluster's address to DIR/ray_current_cluster; sets RAY_ADDR), 1 if its `ray start` has ended
# (its output's tail goes to stderr), 2 while it is starting
rlp_ray_started() {
    if ! kill -0 "$RAY_PID" 2>/dev/null; then
        tail -n 20 "$RAY_DIR/ray_start.out" >&2
        RAY_PID=""
        return 1
    fi
    [ -s "$RAY_DIR/ray_current_cluster" ] || return 2
    RAY_ADDR=$(cat "$RAY_DIR/ray_current_cluster")
}

# rlp_ray_stop: end the Ray this job started, and only it: SIGTERM to its `ray start --block`,
# which drains the node and ends the processes it started. Never `ray stop`: that ends every Ray of
# this user on the node, other jobs' included.
rlp_ray_stop() {
    [ -n "${RAY_PID:-}" ] || return 0
    kill -TERM "$RAY_PID" 2>/dev/null
    for _ in $(seq 120); do                       # up to 60 s (a busy node drains for up to 30 s)
        kill -0 "$RAY_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$RAY_PID" 2>/dev/null             # its reaper then ends what it started
    wait "$RAY_PID" 2>/dev/null
    RAY_PID=""
}
