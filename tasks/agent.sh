# fabjupyter's remote agent (POSIX sh).
#
# The client sends this file on the standard input of `sh -s`, after lines that set the FJ_*
# variables (every value quoted by tasks/remote.py) and before a last line that calls fj_main.
# Everything here is a function definition, so a script cut off in transit runs nothing.
# Secrets arrive only inside this script, on stdin: never in an argument list.
# Output: `fj:key=value` lines that the client parses; `fj:error=CODE` ends a failed step.

fj_say() { printf 'fj:%s=%s\n' "$1" "$2"; }

# fj_fail CODE [DETAIL]: report a failure the user can fix and stop.
fj_fail() {
    fj_say error "$1"
    [ -n "${2-}" ] && fj_say detail "$2"
    fj_tidy_fresh
    exit 3
}

fj_paths() {
    umask 077
    D=$HOME/.fabjupyter
    RUN=$D/run.sh
    fj_flavour server2
    STATE=$D/state
    LOG=$D/jupyter.log
    TMUX_SOCKET=fabjupyter
    TMUX_SESSION=jupyter
}

# fj_flavour KIND: where the settings and password live for this kind of Jupyter, and what they
# should contain. server2: Jupyter Server 2 (JupyterLab 4, Notebook 7); server1: Jupyter Server
# 1.x (JupyterLab 3); nb6: classic Notebook 6, which reads NotebookApp.* from its own file.
fj_flavour() {
    FLAVOUR=${1:-server2}
    case $FLAVOUR in
        nb6)
            CFG=$D/config/jupyter_notebook_config.json PWF=$D/password/jupyter_notebook_config.json
            WANT_CFG=${FJ_CONFIG_NB6-}
            ;;
        server1)
            CFG=$D/config/jupyter_server_config.json PWF=$D/password/jupyter_server_config.json
            WANT_CFG=${FJ_CONFIG_SERVER1-}
            ;;
        *)
            CFG=$D/config/jupyter_server_config.json PWF=$D/password/jupyter_server_config.json
            WANT_CFG=${FJ_CONFIG-}
            ;;
    esac
    WANT_PW=
    [ -n "${FJ_PASSWORD_HASH-}" ] && WANT_PW=$(fj_pw_json "$FJ_PASSWORD_HASH")
    return 0
}

# fj_pw_json HASH: the password file for the current flavour (printf is a builtin: no argv).
fj_pw_json() {
    case $FLAVOUR in
        nb6) printf '{\n  "NotebookApp": {\n    "password": "%s"\n  }\n}\n' "$1" ;;
        server1)
            # Server 1's notebook_shim moves NotebookApp/LabApp/JupyterNotebookApp.password onto
            # ServerApp.password, over ours: the same hash there too
            printf '{\n'
            for app in JupyterNotebookApp LabApp NotebookApp; do
                printf '  "%s": {\n    "password": "%s"\n  },\n' "$app" "$1"
            done
            printf '  "ServerApp": {\n    "password": "%s"\n  }\n}\n' "$1"
            ;;
        *) printf '{\n  "PasswordIdentityProvider": {\n    "hashed_password": "%s"\n  }\n}\n' "$1" ;;
    esac
}

# The stored hash, whichever flavour's file holds it.
fj_stored_hash() {
    for f in "$D"/password/*.json; do
        [ -f "$f" ] || continue
        sed -n -e 's/.*"hashed_password": "\([^"]*\)".*/\1/p' -e 's/.*"password": "\([^"]*\)".*/\1/p' "$f" | sed -n 1p
        return 0
    done
}

fj_has_password() {
    for f in "$D"/password/*.json; do [ -f "$f" ] && return 0; done
    return 1
}

fj_dirs() {
    err=$(mkdir -p "$D/config" "$D/password" 2>&1 && chmod 700 "$D" "$D/config" "$D/password" 2>&1) ||
        fj_fail cannot_write "$err"
}

fj_lastline() { printf '%s\n' "$1" | sed -n '$p'; }

# fj_same FILE CONTENT: does FILE hold exactly CONTENT?
fj_same() {
    [ -f "$1" ] && [ "$(cat "$1" 2>/dev/null && printf x)" = "${2}x" ]
}

# fj_put FILE CONTENT MODE: replace FILE atomically (temporary name, then mv) unless it already
# holds CONTENT. Sets PUT_CHANGED=1 when it wrote.
fj_put() {
    PUT_CHANGED=
    if fj_same "$1" "$2"; then
        chmod "$3" "$1"
        return 0
    fi
    err=$( { printf '%s' "$2" > "$1.tmp.$$" && chmod "$3" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; } 2>&1 ) || {
        rm -f "$1.tmp.$$"
        fj_fail cannot_write "$1: $(fj_lastline "$err")"
    }
    PUT_CHANGED=1
}

# fj_lock: one changing run at a time per user and host. Another run's setup, a retry at once
# after a cut-off run (whose agent goes on), a group run overlapping a single one: each waits
# here (bounded, and says for whom) instead of starting a second Jupyter. flock's lock goes with
# the process, so a killed run leaves none behind; without flock (macOS), a directory whose
# owner is checked. Everything this agent starts closes fd 9, so Jupyter never holds the lock.
fj_lock() {
    [ -d "$D" ] || FRESH=1
    wait_s=$(( ${FJ_TIMEOUT:-60} + 60 ))
    if command -v flock > /dev/null 2>&1; then
        said=
        while :; do
            err=$(mkdir -p "$D" 2>&1 && chmod 700 "$D" 2>&1) || fj_fail cannot_write "$err"
            exec 9>> "$D/lock" || fj_fail cannot_write "$D/lock"
            if ! flock -n 9; then
                [ -n "$said" ] || fj_say waiting "$(fj_lock_owner) $wait_s"
                said=1
                flock -w "$wait_s" 9 || fj_fail locked "$(fj_lock_owner)"
            fi
            # still the lock file, not one that a run failing on a fresh host removed meanwhile?
            [ -e "/proc/$$/fd/9" ] || break
            [ "$D/lock" -ef "/proc/$$/fd/9" ] && break
            exec 9>&-
        done
    else
        err=$(mkdir -p "$D" 2>&1 && chmod 700 "$D" 2>&1) || fj_fail cannot_write "$err"
        i=0
        while ! mkdir "$D/lock.d" 2> /dev/null; do
            owner=$(cat "$D/lock.d/pid" 2> /dev/null)
            if [ -n "$owner" ] && ! kill -0 "$owner" 2> /dev/null; then
                rm -rf "$D/lock.d"  # its run was killed
                continue
            fi
            [ $i = 0 ] && fj_say waiting "$(fj_lock_owner) $wait_s"
            [ $i -ge $((wait_s * 10)) ] && fj_fail locked "$(fj_lock_owner)"
            fj_nap
            i=$((i + 1))
        done
        echo "$$" > "$D/lock.d/pid"
        trap 'rm -rf "$D/lock.d"' EXIT
    fi
    printf '%s (pid %s, since %s)\n' "$FJ_ACTION" "$$" "$(date '+%H:%M:%S')" > "$D/lock.owner"
}

fj_lock_owner() { cat "$D/lock.owner" 2> /dev/null || echo "another run"; }

# A run that made ~/.fabjupyter only to hold its lock, and then changed nothing (it failed, or it
# asks for a password first), leaves no trace of it.
fj_tidy_fresh() {
    [ -n "${FRESH-}" ] || return 0
    for f in "$D"/* "$D"/.*; do
        case ${f##*/} in . | .. | lock | lock.owner | lock.d | '*' | '.*') ;; *) return 0 ;; esac
    done
    rm -rf "$D/lock.owner" "$D/lock" "$D/lock.d"
    rmdir "$D" 2> /dev/null
    return 0
}

# Is a changing run going on now (status does not wait for it)?
fj_busy() {
    if command -v flock > /dev/null 2>&1; then
        [ -f "$D/lock" ] && ! flock -n "$D/lock" true 9>&-
    else
        [ -d "$D/lock.d" ]
    fi
}

# fj_orphans: Jupyter servers this tool launched that still run but are not the recorded one (a
# run killed between the start and the record). Sets ORPHANS.
fj_orphans() {
    ORPHANS=
    [ -f "$D/launched" ] || return 0
    for p in $(cat "$D/launched"); do
        [ "$p" = "$PID" ] && continue
        fj_alive "$p" && ORPHANS="$ORPHANS $p"
    done
    ORPHANS=${ORPHANS# }
    return 0
}

# Stop them (under the lock), and forget every launched pid but the recorded server's.
fj_stop_orphans() {
    fj_orphans
    for p in $ORPHANS; do fj_kill "$p"; done
    [ -n "$ORPHANS" ] && fj_say stopped_unrecorded "$ORPHANS"
    if ! fj_alive; then
        rm -f "$D/launched"
    elif ! fj_same "$D/launched" "$PID
"; then
        echo "$PID" > "$D/launched.tmp.$$" && mv -f "$D/launched.tmp.$$" "$D/launched"
    fi
}

# fj_kill PID: TERM, then KILL after 10 s; returns once it is gone.
fj_kill() {
    kill -TERM "$1" 2> /dev/null
    i=0
    while fj_alive "$1" && [ $i -lt 100 ]; do fj_nap; i=$((i + 1)); done
    if fj_alive "$1"; then
        kill -KILL "$1" 2> /dev/null
        while fj_alive "$1"; do fj_nap; done
    fi
}

fj_read_state() {
    PID= PORT= LAUNCHER= FP= WANT_PORT= STARTED= MODE= SOCK= SFLAVOUR=
    [ -f "$STATE" ] || return 0
    while IFS='=' read -r k v; do
        case $k in
            pid) PID=$v ;;
            port) PORT=$v ;;
            launcher) LAUNCHER=$v ;;
            fingerprint) FP=$v ;;
            requested_port) WANT_PORT=$v ;;
            started) STARTED=$v ;;
            mode) MODE=$v ;;
            sock) SOCK=$v ;;
            flavour) SFLAVOUR=$v ;;
        esac
    done < "$STATE"
    fj_flavour "$SFLAVOUR"
}

# fj_alive [PID]: is that process (default: the recorded server) a live Jupyter?
fj_alive() {
    p=${1-$PID}
    case $p in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$p" 2>/dev/null || return 1
    if [ -r "/proc/$p/cmdline" ]; then
        tr '\0' ' ' < "/proc/$p/cmdline" | grep -q jupyter
    else
        ps -p "$p" -o args= 2>/dev/null | grep -q jupyter
    fi
}

fj_nap() { sleep 0.1 2>/dev/null || sleep 1; }

# What the files on disk (launcher script, settings, password) add up to; recorded at start so
# that a later run can tell whether the running server uses the current configuration.
fj_fingerprint() {
    cat "$RUN" "$CFG" "$PWF" 2>/dev/null | cksum | sed 's/ /-/'
}

# The fingerprint the files will have once the wanted launcher, settings (and password) are written.
fj_wanted_fingerprint() {
    if [ -n "$WANT_PW" ]; then
        printf '%s%s%s' "$FJ_RUN_SH" "$WANT_CFG" "$WANT_PW" | cksum | sed 's/ /-/'
    else
        { printf '%s%s' "$FJ_RUN_SH" "$WANT_CFG"; cat "$PWF" 2>/dev/null; } | cksum | sed 's/ /-/'
    fi
}

fj_report_state() {
    if fj_alive; then
        fj_say running 1
        fj_say pid "$PID"
        fj_say port "$PORT"
        fj_say launcher "$LAUNCHER"
        fj_say started "$STARTED"
        fj_say mode "${MODE:-ssh}"
        fj_say sock "$SOCK"
        if [ "$FP" = "$(fj_fingerprint)" ]; then fj_say current 1; else fj_say current 0; fi
    else
        fj_say running 0
        [ -n "$PID" ] && fj_say stale "$PID"
    fi
    fj_has_password && fj_say has_password 1
    [ -f "$RUN" ] && [ -f "$CFG" ] && fj_say configured 1
    fj_say flavour "$FLAVOUR"
    fj_orphans
    [ -n "$ORPHANS" ] && fj_say unrecorded "$ORPHANS"
    fj_busy && fj_say busy "$(fj_lock_owner)"
    return 0
}

fj_check_launcher() {
    case $FJ_LAUNCHER in
        tmux) command -v tmux > /dev/null 2>&1 || fj_fail no_tmux ;;
        nohup) ;;
        *) fj_fail bad_launcher "$FJ_LAUNCHER" ;;
    esac
}

# The root directory as the launcher resolves it (relative paths are from the home directory): as
# the written launcher said in its probe, else as this run's settings say.
fj_root_dir() {
    if [ -n "${ROOTP-}" ]; then
        printf '%s' "$ROOTP"
        return 0
    fi
    case ${FJ_ROOT-} in
        '') printf '%s' "$HOME" ;;
        /*) printf '%s' "$FJ_ROOT" ;;
        *) printf '%s/%s' "$HOME" "$FJ_ROOT" ;;
    esac
}

fj_check_root() {
    root=$(fj_root_dir)
    if [ -e "$root" ] && [ ! -d "$root" ]; then fj_fail root_not_dir "$root"; fi
}

fj_make_root() {
    root=$(fj_root_dir)
    if [ ! -e "$root" ]; then
        err=$(mkdir -p "$root" 2>&1 && chmod 700 "$root" 2>&1) || fj_fail cannot_write "$root: $err"
        fj_say root_created "$root"
    fi
}

# fj_probe FILE [PORT]: run the launcher script's probe (activation, finding Jupyter and its
# Python, the first free port from PORT). Sets PY, CMD, FREE_PORT, VERSION.
# Only the launcher's standard output is protocol: what the activation (or Jupyter) prints goes to
# its standard error, comes back marked `noise:`, and can never pass for an fj: line.
fj_probe() {
    out=$( { { sh "$1" probe "${2-}" < /dev/null; echo "fj:rc=$?"; } 2>&1 1>&3 3>&- | sed 's/^/noise:/'; } 3>&1)
    fj_probe_result
}

# fj_probe_script TEXT: the same for a launcher script not written yet (fed to sh on stdin), so
# that a setup that cannot work fails before it changes anything.
fj_probe_script() {
    out=$( { { printf '%s' "$1" | sh -s probe; echo "fj:rc=$?"; } 2>&1 1>&3 3>&- | sed 's/^/noise:/'; } 3>&1)
    fj_probe_result
}

fj_probe_result() {
    rc=0
    PY= CMD= FREE_PORT= VERSION= TLS= SOCKP= PFLAVOUR= NOTE= IP= ROOTP= perr= pdetail=
    while IFS= read -r line; do
        case $line in
            fj:python=*) PY=${line#fj:python=} ;;
            fj:command=*) CMD=${line#fj:command=} ;;
            fj:port=*) FREE_PORT=${line#fj:port=} ;;
            fj:version=*) VERSION=${line#fj:version=} ;;
            fj:tls=*) TLS=${line#fj:tls=} ;;
            fj:sock=*) SOCKP=${line#fj:sock=} ;;
            fj:ip=*) IP=${line#fj:ip=} ;;
            fj:root=*) ROOTP=${line#fj:root=} ;;
            fj:flavour=*) PFLAVOUR=${line#fj:flavour=} ;;
            fj:note=*) NOTE=${line#fj:note=} ;;
            fj:error=*) perr=${line#fj:error=} ;;
            fj:detail=*) pdetail=${line#fj:detail=} ;;
            fj:rc=*) rc=${line#fj:rc=} ;;
        esac
    done <<EOF
$out
EOF
    if [ -n "$perr" ] || [ "$rc" -ne 0 ]; then
        # what the activation or Jupyter printed, without our own protocol lines
        noise=$(printf '%s\n' "$out" | sed -n 's/^noise://p' | tail -n 5)
        fj_fail "${perr:-probe_failed}" "${pdetail:-$noise}"
    fi
}

fj_launch() {
    fj_has_password || fj_fail no_password
    [ -f "$RUN" ] || fj_fail not_configured
    fj_check_launcher
    want=${FJ_PORT:-8888}
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        fj_probe "$RUN" "$want"
        fj_check_root
        fj_make_root
        fj_flavour "$PFLAVOUR"
        [ -f "$CFG" ] || fj_fail not_configured  # configured for another kind of Jupyter
        [ -f "$PWF" ] || fj_write_password        # the stored hash, in this kind's file
        if [ "$TLS" = 1 ]; then
            [ -f "$D/tls/cert.pem" ] && [ -f "$D/tls/key.pem" ] || fj_fail no_cert
        fi
        if [ -n "$SOCKP" ]; then
            err=$(mkdir -p "${SOCKP%/*}" 2>&1 && chmod 700 "${SOCKP%/*}" 2>&1) || fj_fail cannot_write "$err"
            rm -f "$SOCKP"
        fi
        [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
        : > "$LOG"
        rm -f "$D/pid"
        case $FJ_LAUNCHER in
            nohup)
                if command -v setsid > /dev/null 2>&1; then
                    (nohup setsid sh "$RUN" serve "$FREE_PORT" "$FLAVOUR" < /dev/null >> "$LOG" 2>&1 9>&- &)
                else
                    (nohup sh "$RUN" serve "$FREE_PORT" "$FLAVOUR" < /dev/null >> "$LOG" 2>&1 9>&- &)
                fi
                ;;
            tmux)
                tmux -L "$TMUX_SOCKET" kill-session -t "$TMUX_SESSION" 2> /dev/null
                err=$(tmux -L "$TMUX_SOCKET" new-session -d -s "$TMUX_SESSION" sh "$RUN" serve "$FREE_PORT" "$FLAVOUR" 2>&1 < /dev/null 9>&-) ||
                    fj_fail launch_failed "tmux: $err"
                ;;
        esac
        # run.sh writes its own pid (and Jupyter's runtime directory) just before it execs Jupyter
        i=0
        while [ ! -s "$D/pid" ] && [ $i -lt 100 ]; do fj_nap; i=$((i + 1)); done
        pid=$(sed -n 1p "$D/pid" 2> /dev/null) runtime=$(sed -n 2p "$D/pid" 2> /dev/null)
        [ -n "$pid" ] || fj_fail launch_failed "the launcher did not start (see $LOG)"
        # ready.py: until it answers, then that the server answering is this one and runs with
        # our settings (Jupyter's runtime file and what it answers)
        result=$(printf '%s' "$FJ_READY_PY" | "$PY" - "${FREE_PORT:-0}" "$pid" "${FJ_TIMEOUT:-60}" "$TLS" "$SOCKP" "$IP" "$runtime" 2>&1 9>&-)
        case $result in
            "ready "*) break ;;
            "unsafe "*)
                fj_kill "$pid"
                fj_fail unsafe "${result#unsafe }"
                ;;
            died)
                if [ $attempt -lt 3 ] && grep -q 'already in use' "$LOG" 2> /dev/null; then
                    want=$((FREE_PORT + 1))  # taken between our probe and Jupyter's bind
                    continue
                fi
                fj_tail_log
                fj_fail died
                ;;
            timeout)
                fj_kill "$pid"
                fj_tail_log
                fj_fail timeout "${FJ_TIMEOUT:-60}"
                ;;
            *) fj_fail launch_failed "$result" ;;
        esac
    done
    PID=$pid PORT=$FREE_PORT LAUNCHER=$FJ_LAUNCHER STARTED=$(date +%s) MODE=ssh SOCK=$SOCKP
    [ "$TLS" = 1 ] && MODE=public
    printf 'pid=%s\nport=%s\nrequested_port=%s\nlauncher=%s\nfingerprint=%s\nstarted=%s\nmode=%s\nsock=%s\nflavour=%s\n' \
        "$PID" "$PORT" "${FJ_PORT:-8888}" "$LAUNCHER" "$(fj_fingerprint)" "$STARTED" "$MODE" "$SOCK" "$FLAVOUR" > "$STATE.tmp.$$" &&
        mv -f "$STATE.tmp.$$" "$STATE"
    fj_say started 1
    fj_say pid "$PID"
    fj_say port "$PORT"
    fj_say launcher "$LAUNCHER"
    fj_say command "$CMD"
    fj_say version "$VERSION"
    fj_say mode "$MODE"
    fj_say sock "$SOCK"
    fj_say flavour "$FLAVOUR"
    fj_say note "$NOTE"
}

fj_tail_log() {
    # Jupyter's own lines (run.sh's note about the moved keys is not news here)
    grep -v '^fabjupyter: ' "$LOG" 2> /dev/null | tail -n "${FJ_LINES:-20}" | while IFS= read -r line; do fj_say log "$line"; done
}

# fj_stop: end the recorded server (TERM, then KILL after 10 s) and its tmux session.
fj_stop() {
    fj_read_state
    STOPPED=
    if fj_alive; then
        fj_kill "$PID"
        STOPPED=$PID
    fi
    PID=
    fj_stop_orphans
    if command -v tmux > /dev/null 2>&1; then
        tmux -L "$TMUX_SOCKET" kill-session -t "$TMUX_SESSION" 2> /dev/null
    fi
    rm -f "$STATE" "$D/pid"
}

# Only this flavour's file stays in a directory of ours (another kind's keys would warn).
fj_only() {
    for f in "${1%/*}"/*.json; do
        [ -f "$f" ] && [ "$f" != "$1" ] && rm -f "$f"
    done
    return 0
}

fj_write_config() {
    fj_dirs
    fj_put "$RUN" "$FJ_RUN_SH" 700
    c1=$PUT_CHANGED
    fj_put "$CFG" "$WANT_CFG" 600
    fj_only "$CFG"
    [ -n "$c1$PUT_CHANGED" ] && fj_say config_changed 1
    return 0
}

# fj_write_password: the new hash if one came, else the stored one in this flavour's format.
fj_write_password() {
    fj_dirs
    if [ -n "$WANT_PW" ]; then
        fj_put "$PWF" "$WANT_PW" 600
        [ -n "$PUT_CHANGED" ] && fj_say password_changed 1
    else
        hash=$(fj_stored_hash)
        [ -n "$hash" ] || fj_fail no_password
        fj_put "$PWF" "$(fj_pw_json "$hash")" 600
    fi
    fj_only "$PWF"
    return 0
}

# The salt part of the stored hash (argon2:$argon2id$v=..$m=..,t=..,p=..$SALT$DIGEST -> up to
# SALT): lets the client hash the same password with the same salt, so that a password given
# again is recognised as unchanged. The digest never leaves the host.
fj_say_salt() {
    salt=$(fj_stored_hash | sed -n 's/^\(argon2:\$argon2id\$[^$]*\$[^$]*\$[^$]*\)\$.*/\1/p')
    fj_say password_salt "$salt"
}

fj_setup() {
    fj_read_state
    fj_stop_orphans
    if [ -z "${FJ_PASSWORD_HASH-}" ] && ! fj_has_password; then
        fj_say need_password 1
        return 0
    fi
    if [ -n "${FJ_PASSWORD_HASH-}" ] && fj_has_password && [ -z "${FJ_SALTED-}" ]; then
        fj_say_salt
        return 0
    fi
    if [ -n "${FJ_PASSWORD_HASH-}" ] && [ "$(fj_stored_hash)" = "$FJ_PASSWORD_HASH" ]; then
        FJ_PASSWORD_HASH= WANT_PW=
    fi
    if fj_alive && [ "$FP" = "$(fj_wanted_fingerprint)" ] && [ "$LAUNCHER" = "$FJ_LAUNCHER" ] &&
        [ "$WANT_PORT" = "${FJ_PORT:-8888}" ]; then
        fj_say unchanged 1
        fj_report_state
        return 0
    fi
    # Check everything that can fail before changing anything: the new launcher script must
    # find Jupyter (written beside the real one, probed, then moved into place).
    fj_check_launcher
    fj_check_root
    fj_probe_script "$FJ_RUN_SH"
    fj_flavour "$PFLAVOUR"
    fj_write_config
    if [ -n "$WANT_PW" ] || [ ! -f "$PWF" ]; then fj_write_password; fi
    if fj_alive; then
        fj_stop
        fj_say restarted "$STOPPED"
    fi
    fj_launch
}

# fj_cert: facts for the certificate's names; whether the host has exactly FJ_CERT/FJ_KEY;
# with FJ_PUSH, install them (directory 0700, files 0600).
fj_cert() {
    fqdn=$(hostname -f 2> /dev/null || hostname 2> /dev/null || uname -n)
    ips=$(hostname -I 2> /dev/null) ||
        ips=$(ip -o addr show 2> /dev/null | awk '{print $4}' | sed 's,/.*,,' | tr '\n' ' ')
    fj_say fqdn "$fqdn"
    fj_say ips "$ips"
    fj_has_password && fj_say has_password 1
    T=$D/tls
    if [ -n "${FJ_CERT-}" ] && fj_same "$T/cert.pem" "$FJ_CERT" && fj_same "$T/key.pem" "$FJ_KEY"; then
        fj_say same 1
    fi
    if [ -n "${FJ_PUSH-}" ]; then
        fj_dirs
        err=$(mkdir -p "$T" 2>&1 && chmod 700 "$T" 2>&1) || fj_fail cannot_write "$err"
        fj_put "$T/key.pem" "$FJ_KEY" 600
        fj_put "$T/cert.pem" "$FJ_CERT" 600
        fj_say pushed 1
    fi
}

# fj_plan: what setup/config would do, changing nothing (--dry-run). The launcher script and
# settings file come back line by line for a diff; the password file never does.
fj_plan() {
    fj_read_state
    fj_report_state
    for pair in "run:$RUN" "cfg:$CFG"; do
        f=${pair#*:}
        [ -f "$f" ] || continue
        fj_say "has_${pair%%:*}" 1
        while IFS= read -r l || [ -n "$l" ]; do fj_say "file_${pair%%:*}" "$l"; done < "$f"
    done
    fj_same "$RUN" "$FJ_RUN_SH" && fj_same "$CFG" "$WANT_CFG" && fj_say config_same 1
    [ "$FP" = "$(fj_wanted_fingerprint)" ] && [ "$LAUNCHER" = "$FJ_LAUNCHER" ] &&
        [ "$WANT_PORT" = "${FJ_PORT:-8888}" ] && fj_say launch_same 1
    [ -n "${FJ_ROOT+x}" ] && { root=$(fj_root_dir); [ -e "$root" ] || fj_say root_missing "$root"; }
    out=$( (fj_check_launcher && fj_check_root && fj_probe_script "$FJ_RUN_SH") 2>&1) ||
        printf '%s\n' "$out" | sed -n -e 's/^fj:error=/fj:would_error=/p' -e 's/^fj:detail=/fj:would_detail=/p'
    return 0
}

fj_main() {
    # Finish the job even if the client goes away mid-way (Ctrl-C, a dropped connection): the
    # output is then lost, but the state file still matches what runs.
    trap '' HUP PIPE
    fj_paths
    case $FJ_ACTION in
        config | password | start | stop | restart | setup) fj_lock ;;
        cert) [ -n "${FJ_PUSH-}" ] && fj_lock ;;
    esac
    case $FJ_ACTION in
        status) fj_read_state; fj_report_state ;;
        config)
            fj_read_state
            fj_check_root
            # the kind of Jupyter decides the file: ask the launcher (nothing is written if it fails)
            fj_probe_script "$FJ_RUN_SH"
            fj_flavour "$PFLAVOUR"
            fj_write_config
            fj_alive && [ "$FP" != "$(fj_fingerprint)" ] && fj_say restart_needed 1
            ;;
        password)
            fj_read_state
            fj_write_password
            fj_alive && [ "$FP" != "$(fj_fingerprint)" ] && fj_say restart_needed 1
            ;;
        start)
            fj_read_state
            fj_stop_orphans
            if fj_alive; then
                fj_say already_running 1
                fj_report_state
            else
                fj_launch
            fi
            ;;
        stop)
            fj_stop
            [ -n "$STOPPED" ] && fj_say stopped "$STOPPED"
            ;;
        restart)
            fj_read_state
            fj_has_password || fj_fail no_password
            FJ_LAUNCHER=${FJ_LAUNCHER:-${LAUNCHER:-nohup}}
            fj_check_launcher
            fj_stop
            [ -n "$STOPPED" ] && fj_say stopped "$STOPPED"
            fj_launch
            ;;
        setup) fj_setup ;;
        cert) fj_cert ;;
        plan) fj_plan ;;
        logs)
            if [ -f "$LOG" ]; then tail -n "${FJ_LINES:-50}" "$LOG"; else fj_say no_log 1; fi
            ;;
        *) fj_fail bad_action "$FJ_ACTION" ;;
    esac
    fj_tidy_fresh
    return 0
}
