#!/bin/sh
# Jupyter launcher written by fabjupyter; `fab -H HOST config` rewrites it.
# Change settings in hosts.yaml or with the tasks' options, not here.
#   sh run.sh probe [PORT]   print the Jupyter command, its Python and the first free port from PORT
#   sh run.sh serve PORT KIND  run Jupyter on PORT (the launcher, nohup or tmux, detaches it)
# @SETTINGS@

MODE=${1-} PORT=${2-} KIND=${3-}
D=$HOME/.fabjupyter
# Jupyter's output (and the activation's) goes to the log, whichever launcher detached it.
# Standard input stays: under tmux it is the pane's terminal, and tmux hangs up on a pane whose
# terminal nobody holds open any more.
if [ "$MODE" = serve ]; then
    [ -t 1 ] && echo "Jupyter's output goes to $D/jupyter.log (fab -H HOST logs shows it)"
    exec >> "$D/jupyter.log" 2>&1
fi
# Our settings and password come first in Jupyter's config search path, before a venv's
# etc/jupyter and ~/.jupyter, whose files stay as the user wrote them.
JUPYTER_CONFIG_PATH=$D/password:$D/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}
export JUPYTER_CONFIG_PATH
PATH=$PATH:$HOME/.local/bin
cd || exit 1

# Non-interactive shells read no rc files: the activation line does what they would.
command -v source > /dev/null 2>&1 || eval 'source() { . "$@"; }'
# `conda activate` needs conda's shell hook, which non-interactive shells never load: load it
# from the conda on the PATH or in a usual install place, and say so.
case $FJ_ACTIVATE in
    *"conda activate"*)
        found=$(command -v conda 2> /dev/null)
        case $found in
            conda) ;; # already a shell function: initialised
            *)
                for c in "$found" "$HOME/miniforge3/bin/conda" "$HOME/miniconda3/bin/conda" "$HOME/anaconda3/bin/conda" \
                    /opt/conda/bin/conda /opt/miniconda3/bin/conda; do
                    if [ -n "$c" ] && [ -x "$c" ]; then
                        eval "$("$c" shell.posix hook)" && echo "fj:note=conda was not initialised for non-interactive shells; used $c shell.posix hook"
                        break
                    fi
                done
                ;;
        esac
        ;;
esac
if [ -n "$FJ_ACTIVATE" ]; then
    command eval "$FJ_ACTIVATE" < /dev/null >&2 || {
        echo "fj:error=activate_failed"
        exit 3
    }
fi
# After the activation, which may set them: JUPYTER_PORT would override our port (and make
# Jupyter abort in socket mode), JUPYTER_NO_CONFIG would drop our configuration.
unset JUPYTER_PORT JUPYTER_NO_CONFIG

# PY: the interpreter named by a Python script's first line (or pip's long-path form on line 2);
# PLAIN=1 when that line passes it no options, so boot.py can run the script in it just as the
# script would run itself.
python_of() {
    PY= PLAIN=
    IFS= read -r first < "$1" || return 1
    case $first in
        '#!/bin/sh'*)
            PY=$(sed -n "2s/^'''exec' \"\\(.*\\)\" \"\$0\" \"\$@\".*/\\1/p" "$1") PLAIN=1
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

# real_dir FILE: the directory of the file a (chain of) symlink(s) ends at.
real_dir() {
    f=$1 i=0
    while [ -h "$f" ] && [ $i -lt 40 ]; do
        l=$(readlink "$f") || break
        case $l in /*) f=$l ;; *) f=${f%/*}/$l ;; esac
        i=$((i + 1))
    done
    (cd -P "${f%/*}" 2> /dev/null && pwd)
}

# jupyter_in DIR...: the first of jupyter-lab, -notebook, -server in the first DIR that has one
jupyter_in() {
    for d in "$@"; do
        [ -n "$d" ] || continue
        for sub in lab notebook server; do
            [ -x "$d/jupyter-$sub" ] && [ ! -d "$d/jupyter-$sub" ] && exe=$d/jupyter-$sub && return 0
        done
    done
    return 1
}

if [ -n "$FJ_JUPYTER" ]; then
    eval "set -- $FJ_JUPYTER"
    case $1 in "~/"*) exe=$HOME/${1#"~/"} && shift && set -- "$exe" "$@" ;; esac
    exe=$(command -v "$1") || {
        echo "fj:error=no_jupyter"
        echo "fj:detail=$1"
        exit 3
    }
    shift
    # `jupyter lab` runs jupyter-lab in a second interpreter, from the directory of the jupyter
    # command or of the file it links to, as Jupyter looks: run that directly
    if [ "${exe##*/}" = jupyter ] && [ $# -gt 0 ]; then
        case $1 in
            *[!a-z0-9_-]* | -*) ;;
            *)
                for d in "${exe%/*}" "$(real_dir "$exe")"; do
                    if [ -n "$d" ] && [ -x "$d/jupyter-$1" ]; then
                        exe=$d/jupyter-$1
                        shift
                        break
                    fi
                done
                ;;
        esac
    fi
    set -- "$exe" "$@"
else
    # As `jupyter lab` would, else `jupyter notebook`, else `jupyter server`: first in the
    # environment the activate line activated, then beside the first `jupyter` on the PATH (or the
    # file it links to), then anywhere on the PATH.
    exe= j=$(command -v jupyter 2> /dev/null)
    case $j in /*) ;; *) j= ;; esac
    jupyter_in "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}" "${CONDA_PREFIX:+$CONDA_PREFIX/bin}" \
        "${j:+${j%/*}}" "${j:+$(real_dir "$j")}" || {
        for sub in lab notebook server; do
            exe=$(command -v "jupyter-$sub" 2> /dev/null) && break
            exe=
        done
    }
    [ -n "$exe" ] || {
        echo "fj:error=no_jupyter"
        exit 3
    }
    set -- "$exe"
fi
python_of "$exe" 2> /dev/null
[ -n "$PY" ] && [ -x "$PY" ] || PLAIN= PY=$(command -v python3 2> /dev/null) || {
    echo "fj:error=no_python"
    echo "fj:detail=$exe"
    exit 3
}
case $FJ_ROOT in
    '') root=$HOME ;;
    /*) root=$FJ_ROOT ;;
    *) root=$HOME/$FJ_ROOT ;;
esac

case $MODE in
    probe)
        echo "fj:python=$PY"
        echo "fj:ip=$FJ_IP"
        echo "fj:root=$root"
        [ "$FJ_TLS" = 1 ] && echo "fj:tls=1"
        echo "fj:command=$*"
        if [ "$FJ_SOCK" = 1 ]; then
            echo "fj:sock=$D/run/jupyter.sock"
            PORT=
        fi
        "$PY" - "$PORT" "$FJ_IP" "$*" << 'EOF'
import os, socket, sys

# Versions from the installed distributions' directory names (NAME-VERSION.dist-info, or
# NAME-VERSION[-pyX.Y].egg-info), first along sys.path as importlib.metadata finds them, without
# importing importlib.metadata (half of this script's start-up).
found = {}
for entry in sys.path:
    try:
        names = os.listdir(entry or ".")
    except OSError:
        continue
    for name in names:
        stem, _, kind = name.rpartition(".")
        if kind in ("dist-info", "egg-info") and stem.count("-") >= 1:
            dist, version = stem.split("-")[:2]
            found.setdefault(dist.lower().replace(".", "_"), version)


if "jupyter_server" not in found and "notebook" not in found:
    try:  # installed some other way (an .egg, say): ask importlib.metadata after all
        from importlib import metadata
        for name in ("jupyter_server", "jupyterlab", "notebook"):
            try:
                found[name] = metadata.version(name)
            except Exception:
                pass
    except ImportError:
        pass


def version(name):
    return found.get(name, "")


server, lab, notebook = version("jupyter_server"), version("jupyterlab"), version("notebook")
print("fj:version=" + ", ".join(
    "%s %s" % (n, v) for n, v in (("JupyterLab", lab), ("Notebook", notebook), ("jupyter_server", server)) if v))


def number(v):
    try:
        return tuple(int(x) for x in v.split(".")[:2])
    except ValueError:
        return (0, 0)


# Which kind of Jupyter the command runs decides which settings it reads.
command = sys.argv[3].rsplit("/", 1)[-1]
if "notebook" in command and notebook and number(notebook) < (7, 0):
    if number(notebook) < (6, 1):  # argon2 hashes from 6.1 on
        print("fj:error=unsupported")
        print("fj:detail=classic Notebook %s (6.1 or newer is needed)" % notebook)
        sys.exit(3)
    flavour = "nb6"
elif number(server) >= (2, 0):
    flavour = "server2"
elif number(server) >= (1, 0):
    flavour = "server1"
else:
    print("fj:error=unsupported")
    print("fj:detail=" + ("jupyter_server " + server if server else "this Jupyter (no jupyter_server, no classic Notebook)"))
    sys.exit(3)
print("fj:flavour=" + flavour)
if sys.argv[1]:
    first = int(sys.argv[1])
    for port in range(first, min(first + 100, 65536)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds
        try:
            s.bind((sys.argv[2], port))
        except OSError:
            continue
        finally:
            s.close()
        print("fj:port=%d" % port)
        break
    else:
        print("fj:error=no_free_port")
        print("fj:detail=%d" % first)
        sys.exit(3)
EOF
        ;;
    serve)
        # classic Notebook 6 reads NotebookApp.* (and notebook_dir); Jupyter Server reads ServerApp.*
        app=ServerApp root_key=root_dir
        [ "$KIND" = nb6 ] && app=NotebookApp root_key=notebook_dir
        allow_root=
        [ "$(id -u)" = 0 ] && allow_root=--allow-root
        # Where Jupyter writes its runtime file (jupyter_core's rule), for the check after the start
        runtime=${JUPYTER_RUNTIME_DIR-}
        if [ -z "$runtime" ]; then
            if [ -n "${JUPYTER_DATA_DIR-}" ]; then
                runtime=$JUPYTER_DATA_DIR/runtime
            elif [ "$(uname -s)" = Darwin ]; then
                runtime=$HOME/Library/Jupyter/runtime
            else
                runtime=${XDG_DATA_HOME:-$HOME/.local/share}/jupyter/runtime
            fi
        fi
        # This pid is Jupyter's once exec runs; `launched` keeps every one, so that a server whose
        # start was never recorded (its setup killed) is still found and stopped.
        printf '%s\n%s\n' "$$" "$runtime" > "$D/pid.tmp.$$" && mv -f "$D/pid.tmp.$$" "$D/pid"
        echo "$$" >> "$D/launched"
        if [ "$KIND" != nb6 ]; then
            echo "fabjupyter: Jupyter's warnings that keys 'moved from NotebookApp/LabApp/JupyterNotebookApp to ServerApp' are about this tool's own settings, pinned there so that an older config cannot override them"
        fi
        if [ "$FJ_TLS" = 1 ]; then
            set -- "$@" --$app.certfile="$D/tls/cert.pem" --$app.keyfile="$D/tls/key.pem"
        fi
        if [ "$FJ_SOCK" = 1 ]; then
            # a Unix socket instead of a port (Jupyter aborts on --sock with any port option)
            set -- "$@" --$app.sock="$D/run/jupyter.sock" --$app.sock_mode=0600
        else
            set -- "$@" --$app.port="$PORT"
        fi
        # Through boot.py (see that file) when Jupyter is a Python script run by its own Python;
        # as it is when boot.py cannot be written (a full disk, say).
        if [ -n "$PLAIN" ]; then
            if cat > "$D/boot.py.tmp" << 'FJ_BOOT_PY' && mv -f "$D/boot.py.tmp" "$D/boot.py"; then
# @BOOT@
FJ_BOOT_PY
                set -- "$PY" "$D/boot.py" "$@"
            else
                rm -f "$D/boot.py.tmp"
            fi
        fi
        exec "$@" --$app.$root_key="$root" $allow_root
        ;;
    *)
        echo "usage: sh run.sh probe [PORT] | sh run.sh serve PORT [server2|server1|nb6]" >&2
        exit 2
        ;;
esac
