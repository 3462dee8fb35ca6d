# fabjupyter's remote bootstrap (POSIX sh): the activation line, finding Jupyter and the Python
# it runs on. Everything else is the agent (agent.py and the modules beside it), in that Python.
# One text, two uses:
#
#  - The agent's way in: the client sends this file on the standard input of `sh -s`, after lines
#    that set FJ_* variables (every value quoted by the client's one helper) and before a last
#    line `fj_boot agent`. Everything here is a definition, so a script cut off in transit runs
#    nothing. The agent (its folder joined into one script by pack.py) and its request travel in
#    FJ_AGENT_PY, fed to Python through a pipe by printf (a builtin: secrets never reach an
#    argument list). A pipe, not the rest of this stdin: dash reads a script from a pipe in
#    blocks, past the line that would hand it on.
#  - ~/.fabjupyter/run.sh, with `fj_boot "$@"` last: `sh run.sh serve` (under tmux) activates as
#    the agent did and execs Jupyter's command line, which the agent wrote to serve.sh.
#
# The reply channel is file descriptor 3 (the SSH session's standard output); everything else,
# the activation's output included, goes to standard error, so nothing it prints can pass for a
# reply.

# fj_home: D, the instance's directory: ~/.fabjupyter for the default one, else
# ~/.fabjupyter/instances/NAME (a name the agent refuses is left to it to say so)
fj_home() {
    umask 077
    D=$HOME/.fabjupyter
    case ${FJ_INSTANCE:-default} in
        default | [_-]* | *[!A-Za-z0-9_-]*) ;;
        *) D=$D/instances/$FJ_INSTANCE ;;
    esac
}

# fj_settings: the settings for Jupyter (FJ_ACTIVATE, FJ_JUPYTER, FJ_ROOT, FJ_IP, FJ_TLS,
# FJ_SOCK): the client's (setup, config), else the ones written on the host, else those inside
# a run.sh that an earlier version of this tool wrote.
fj_settings() {
    if [ -n "${FJ_SETTINGS+x}" ]; then
        eval "$FJ_SETTINGS"
    elif [ -f "$D/settings.sh" ]; then
        . "$D/settings.sh"
    elif [ -f "$D/run.sh" ] && grep -q '^FJ_ACTIVATE=' "$D/run.sh"; then
        eval "$(sed -n '/^FJ_ACTIVATE=/,/^FJ_SOCK=/p' "$D/run.sh")"
    else
        return 1
    fi
}

# fj_activate: run the activation line as an interactive shell's rc files would have. Its output
# goes to standard error; NOTE says what was done on its behalf.
fj_activate() {
    NOTE=
    PATH=$PATH:$HOME/.local/bin
    command -v source > /dev/null 2>&1 || eval 'source() { . "$@"; }'
    # `conda activate` needs conda's shell hook, which non-interactive shells never load
    case ${FJ_ACTIVATE-} in
        *"conda activate"*)
            found=$(command -v conda 2> /dev/null)
            case $found in
                conda) ;; # already a shell function: initialised
                *)
                    for c in "$found" "$HOME/miniforge3/bin/conda" "$HOME/miniconda3/bin/conda" "$HOME/anaconda3/bin/conda" \
                        /opt/conda/bin/conda /opt/miniconda3/bin/conda; do
                        if [ -n "$c" ] && [ -x "$c" ]; then
                            eval "$("$c" shell.posix hook)" &&
                                NOTE="conda was not initialised for non-interactive shells; used $c shell.posix hook"
                            break
                        fi
                    done
                    ;;
            esac
            ;;
    esac
    if [ -n "${FJ_ACTIVATE-}" ]; then
        command eval "$FJ_ACTIVATE" < /dev/null >&2 || return 1
    fi
    # may have been set by the activation: JUPYTER_PORT would override our port (and make Jupyter
    # abort in socket mode), JUPYTER_NO_CONFIG would drop our configuration
    unset JUPYTER_PORT JUPYTER_NO_CONFIG
    return 0
}

# fj_python_of SCRIPT: PY, the interpreter its first line names (or pip's long-path form on line
# 2); PLAIN=1 when that line passes it no options (fast_start may then run the script in it).
fj_python_of() {
    PY= PLAIN=
    IFS= read -r first < "$1" || return 1
    case $first in
        '#!/bin/sh'*)
            # pip's form for long paths: the path is quoted only when it has a space
            PY=$(sed -n -e "2s/^'''exec' \"\\(.*\\)\" \"\$0\" \"\$@\".*/\\1/p" \
                -e "2s/^'''exec' \\([^ \"]*\\) \"\$0\" \"\$@\".*/\\1/p" "$1") PLAIN=1
            ;;
        '#!'*)
            set -- ${first#??}
            if [ "${1##*/}" = env ]; then
                PY=$(command -v "$2")
                [ $# = 2 ] && PLAIN=1
            else
                PY=$1
                [ $# = 1 ] && PLAIN=1
            fi
            ;;
        *) return 1 ;;
    esac
}

# fj_real_dir FILE: the directory of the file a (chain of) symlink(s) ends at.
fj_real_dir() {
    f=$1 i=0
    while [ -h "$f" ] && [ $i -lt 40 ]; do
        l=$(readlink "$f") || break
        case $l in /*) f=$l ;; *) f=${f%/*}/$l ;; esac
        i=$((i + 1))
    done
    (cd -P "${f%/*}" 2> /dev/null && pwd)
}

# fj_jupyter_in DIR...: EXE, the first of jupyter-lab, -notebook, -server in the first DIR with one
fj_jupyter_in() {
    for d in "$@"; do
        [ -n "$d" ] || continue
        for sub in lab notebook server; do
            [ -x "$d/jupyter-$sub" ] && [ ! -d "$d/jupyter-$sub" ] && EXE=$d/jupyter-$sub && return 0
        done
    done
    return 1
}

# fj_agent CODE DETAIL [COMMAND...]: hand over to the agent in $PY (CODE: what went wrong here,
# if anything), or reply with the error ourselves when this host has no Python at all.
fj_agent() {
    if [ -z "$PY" ] || ! command -v "$PY" > /dev/null 2>&1; then
        PY=$(command -v python3 2> /dev/null) || PY=$(command -v python 2> /dev/null) || {
            printf '{"error": {"code": "no_python_agent", "detail": "", "log": []}}\n' >&3
            exit 3
        }
        PLAIN=
    fi
    code=$1 detail=$2
    shift 2
    printf '%s' "$FJ_AGENT_PY" | "$PY" - fabjupyter-agent "$code" "$detail" "${PLAIN-}" "${NOTE-}" "$@"
}

# fj_job: in a batch job, on its compute node (job.sh runs `sh run.sh job`; its output is the
# job's, appended to jupyter.log): the node's address as the scheduler knows it (the one the
# login node reaches), a free port there, a settings file that makes Jupyter listen on that
# address only, then Jupyter. Another user on the node can take the port between our look and
# Jupyter's bind, so where it listens reaches job.where (which the agent on the login node reads
# from the shared home directory, and accepts only with this proof) only once ready.py, here on
# the node, found that the process listening is the Jupyter this job started, with our settings;
# if not, Jupyter is stopped before anyone logs in, the job ends, and job.where says why.
fj_job() {
    cd || exit 1
    fj_settings || { echo "fabjupyter: no settings in $D; run setup"; exit 3; }
    fj_activate || { echo "fabjupyter: the activate line failed"; exit 3; }
    . "$D/serve.sh"
    # the job's id as the agent has it (what submitting answered), and the node's name, from
    # the variables each scheduler sets (PBS wrappers on SLURM set SLURM's, not PBS_JOBID)
    case ${FJ_SCHEDULER-slurm} in
        sge) job=${JOB_ID-} node=${HOSTNAME:-$(hostname)} ;;
        pbs)
            job=${PBS_JOBID:-${SLURM_JOB_ID-}} node=${SLURMD_NODENAME-}
            [ -n "$node" ] || [ ! -r "${PBS_NODEFILE-}" ] || IFS= read -r node < "$PBS_NODEFILE"
            [ -n "$node" ] || node=$(hostname)
            ;;
        *) job=${SLURM_JOB_ID-} node=${SLURMD_NODENAME:-$(hostname)} ;;
    esac
    # the node's address as SLURM knows it (the one the login node reaches), else its name
    addr=
    [ -z "${SLURMD_NODENAME-}" ] || addr=$(scontrol show node "$node" 2> /dev/null | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p' | head -n 1)
    [ -n "$addr" ] || addr=$node
    mkdir -p "$D/job" "$D/runtime" || exit 3
    # the job's check (ready.py and net.py, which the agent wrote in lib/): it writes the
    # settings file for this address and prints a free port there
    port=$(cd "$D/lib" && "$FJ_PYTHON" -m fabjupyter_remote.ready port "$addr" "$FJ_PORT" "$D/job/$FJ_CONFIG_NAME" \
        "$FJ_IP_CONFIG") && [ -n "$port" ] || {
        echo "fabjupyter: no free port on $node ($addr)"
        exit 3
    }
    echo "fabjupyter: job $job on $node: Jupyter on $addr:$port"
    JUPYTER_CONFIG_PATH=$D/job:$D/password:$D/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}
    JUPYTER_RUNTIME_DIR=$D/runtime
    export JUPYTER_CONFIG_PATH JUPYTER_RUNTIME_DIR
    # The script waits for Jupyter, so the job lasts as long as it does (what a job script
    # leaves running when it ends is killed, or escapes the job), and outlives it long enough
    # to say why it failed; the check runs meanwhile, in the foreground.
    "$@" "--$FJ_APP.port=$port" < /dev/null &
    jupyter=$!
    (cd "$D/lib" && exec "$FJ_PYTHON" -m fabjupyter_remote.ready job "${job:-0}" "$node" "$addr" "$port" "$jupyter" \
        "$FJ_TIMEOUT" "$JUPYTER_RUNTIME_DIR" "$D/job.where") < /dev/null || {
        kill "$jupyter" 2> /dev/null
        wait "$jupyter"
        exit 3
    }
    wait "$jupyter"
}

# fj_boot agent | serve | job
fj_boot() {
    case ${1-} in
        agent | serve | job) ;;
        *)
            echo "usage: sh run.sh serve|job (fabjupyter's launcher, run by its agent)" >&2
            return 2
            ;;
    esac
    fj_home
    if [ "$1" = job ]; then
        case $0 in */*) D=${0%/*} ;; *) D=. ;; esac
        D=$(cd "$D" && pwd) || exit 3
        fj_job
    fi
    if [ "$1" = serve ]; then
        shift
        # run.sh is in the instance's directory
        case $0 in */*) D=${0%/*} ;; *) D=. ;; esac
        D=$(cd "$D" && pwd) || exit 3
        [ -t 1 ] && echo "Jupyter's output goes to $D/jupyter.log (fab -H HOST logs shows it)"
        exec >> "$D/jupyter.log" 2>&1
        cd || exit 1
        fj_settings || { echo "fabjupyter: no settings in $D; run setup"; exit 3; }
        fj_activate || { echo "fabjupyter: the activate line failed"; exit 3; }
        JUPYTER_CONFIG_PATH=$D/password:$D/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}
        export JUPYTER_CONFIG_PATH
        # this pid is Jupyter's once exec runs; `launched` keeps every one, so that a server
        # whose start was never recorded (its run killed) is still found and stopped
        printf '%s\n' "$$" > "$D/pid.tmp.$$" && mv -f "$D/pid.tmp.$$" "$D/pid"
        echo "$$" >> "$D/launched"
        [ $# -gt 0 ] || . "$D/serve.sh"
        exec "$@"
    fi
    # the agent: finish the job even if the client goes away mid-way (Ctrl-C, a dropped link)
    trap '' HUP PIPE
    exec 3>&1 1>&2
    cd || exit 1
    PY= PLAIN= NOTE=
    if [ -z "${FJ_NEEDS_JUPYTER-}" ]; then
        # status, stop, logs, password, cert: the interpreter that ran Jupyter last, else python3;
        # no activation, so these work when the environment is gone
        PY=
        [ -f "$D/python" ] && IFS= read -r PY < "$D/python"
        [ -n "$PY" ] && [ -x "$PY" ] || PY=
        fj_agent "" ""
        return
    fi
    fj_settings || { fj_agent not_configured ""; return; }
    fj_activate || { fj_agent activate_failed ""; return; }
    if [ -n "${FJ_JUPYTER-}" ]; then eval "set -- $FJ_JUPYTER"; else set --; fi
    if [ -n "${FJ_CONTAINER-}" ]; then
        # Jupyter is inside an image: the agent, in this host's python3, finds the runtime and
        # asks the image (containers.py), with jupyter:'s words as they are
        fj_agent "" "" "$@"
        return
    fi
    fj_with_jupyter fj_agent_for "$@" || fj_agent no_jupyter "$MISSING"
}

# fj_with_jupyter THEN [WORD...]: EXE, Jupyter's command: the WORDs (jupyter:), else as `jupyter
# lab` would, else `jupyter notebook`, else `jupyter server`; then `THEN EXE ARG...`. Status 1
# when there is none (MISSING: the word not found, if one was given). The agent's way, and the
# probe of an image (containers.py) inside it.
fj_with_jupyter() {
    cont=$1 EXE= MISSING=
    shift
    if [ $# -gt 0 ]; then
        case $1 in "~/"*) EXE=$HOME/${1#"~/"} && shift && set -- "$EXE" "$@" ;; esac
        EXE=$(command -v "$1") || { MISSING=$1; return 1; }
        shift
        # `jupyter lab` runs jupyter-lab in a second interpreter, from the directory of the
        # jupyter command or of the file it links to, as Jupyter looks: run that directly
        if [ "${EXE##*/}" = jupyter ] && [ $# -gt 0 ]; then
            case $1 in
                *[!a-z0-9_-]* | -*) ;;
                *)
                    for d in "${EXE%/*}" "$(fj_real_dir "$EXE")"; do
                        if [ -n "$d" ] && [ -x "$d/jupyter-$1" ]; then
                            EXE=$d/jupyter-$1
                            shift
                            break
                        fi
                    done
                    ;;
            esac
        fi
    else
        # first in the environment the activate line activated, then beside the first `jupyter`
        # on the PATH (or the file it links to), then anywhere on the PATH; last, the environment
        # this tool installed (setup --install), which never shadows one of the user's
        j=$(command -v jupyter 2> /dev/null)
        case $j in /*) ;; *) j= ;; esac
        fj_jupyter_in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}" "${CONDA_PREFIX:+$CONDA_PREFIX/bin}" \
            "${j:+${j%/*}}" "${j:+$(fj_real_dir "$j")}" || {
            for sub in lab notebook server; do
                EXE=$(command -v "jupyter-$sub" 2> /dev/null) && break
                EXE=
            done
            [ -n "$EXE" ] || fj_jupyter_in "$HOME/.fabjupyter/venv/bin" || EXE=
        }
        [ -n "$EXE" ] || return 1
    fi
    "$cont" "$EXE" "$@"
}

# fj_python_for EXE: PY, the Python that runs Jupyter's script EXE. A command that is no Python
# script (a shell wrapper, a container's runner), or whose Python is gone: python3, never the
# wrapper's own interpreter. Status 1 when there is neither.
fj_python_for() {
    fj_python_of "$1" 2> /dev/null
    case ${PY##*/} in python* | pypy*) ;; *) PY= ;; esac
    [ -n "$PY" ] && [ -x "$PY" ] || PY= PLAIN=
    [ -n "$PY" ] || PY=$(command -v python3 2> /dev/null)
}

# fj_agent_for EXE ARG...: the agent, in the Python that runs Jupyter (to see what Jupyter sees)
fj_agent_for() {
    fj_python_for "$1" || { fj_agent no_python "$1"; return; }
    fj_agent "" "" "$@"
}

# fj_probe VERSIONS_PY [WORD...]: inside a container image, Jupyter's command (as the agent
# finds one on a host) and its Python, which prints them with its versions (install.py's
# VERSIONS_PY); one line "no_jupyter WORD" or "no_python EXE" if not
fj_probe() {
    FJ_VERSIONS_PY=$1
    shift
    fj_with_jupyter fj_probe_in "$@" || echo "no_jupyter $MISSING"
}

fj_probe_in() {
    fj_python_for "$1" || { echo "no_python $1"; return; }
    "$PY" -c "$FJ_VERSIONS_PY" "$@"
}
