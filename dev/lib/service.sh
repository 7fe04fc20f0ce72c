# shellcheck shell=bash disable=SC2034 # globals for the scripts that source this
# dev/lib/service.sh — the one life cycle of a local dev service (dev/kafka, dev/kafka-secure,
# dev/registry): start detached or reuse, wait until ready, stop, status, under a per-state-dir
# lock, with a pid file, a ready file and a log; plus Java selection, Maven fetch, port checks.
# Needs: Linux (flock, setsid, /proc).
#
# A script sources this, calls svc_init, sets the settings below and defines the hooks, then
# runs svc_start, svc_stop or svc_status.
#   HOST PORT        where the service answers; SECOND_PORT the other port it takes
#   PORT_VAR         the environment variable that moves PORT (named when a port is taken)
#   START_TIMEOUT    seconds to wait for it to be ready
#   MARKER           an argument only our process has on its command line: guards against a
#                    reused pid (a config file path in the state dir, or a -D property)
#   READY_TAG        what the ready file holds after the pid once it was ready (default: PORT)
#   READY_WHAT       what ready means, for messages ("accept clients")
#   PROBE_LOG        optional: the readiness check's output, shown with the log when it fails
# Hooks (those marked * have a default here):
#   svc_prepare*         under the lock, first: tools, downloads, certificates
#   svc_mismatch* PID    print why the running PID must be restarted; fail if it may be reused
#   svc_running_port PID the port that process was started with
#   svc_up PORT          it answers on PORT (quick)
#   svc_probe SECONDS    the full readiness check on PORT, within SECONDS
#   svc_configure*       nothing of ours runs, the ports are free: write configs, format data
#   svc_spawn            start it with svc_launch DIR COMMAND...
#   svc_recover*         it died while starting: fix what it could not load, succeed to retry once
#   svc_print PORT       the NAME=value lines for callers, on stdout

SVC_LOCK_WAIT=900 # a cold start (download + start) holds the lock for a while

# svc_init NAME NOUN STATE FILE: messages start with "NAME: " and speak of the NOUN ("broker");
# the state dir STATE holds FILE.pid, FILE.ready, FILE.log (the run before: FILE.log.1), lock.
svc_init() {
    SVC=$1 NOUN=$2 STATE=$3
    PIDFILE="$STATE/$4.pid"
    READYFILE="$STATE/$4.ready"
    LOGFILE="$STATE/$4.log"
    LOCKFILE="$STATE/lock"
    READY_TAG=
}

say() { printf '%s: %s\n' "$SVC" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$SVC" "$*" >&2
    exit 1
}

# svc_env_port VAR DEFAULT: the port in $VAR, else DEFAULT; dies unless a port below 65535
# (the service also takes the one above it).
svc_env_port() {
    local v=${!1:-$2}
    if ! [[ $v =~ ^[0-9]+$ ]] || ((v < 1 || v >= 65535)); then
        die "$1 must be a port number below 65535, got '$v'"
    fi
    printf '%s\n' "$v"
}

# svc_env_seconds VAR DEFAULT: the number of seconds in $VAR, else DEFAULT.
svc_env_seconds() {
    local v=${!1:-$2}
    [[ $v =~ ^[0-9]+$ ]] || die "$1 must be a number of seconds"
    printf '%s\n' "$v"
}

# svc_port_open HOST PORT: something accepts TCP connections there.
svc_port_open() {
    # shellcheck disable=SC2016
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# svc_java_major JAVA: the feature version (8, 17, 21, 25, ...) of that java, or fail.
svc_java_major() {
    local line v
    [[ -x $1 ]] || command -v "$1" >/dev/null 2>&1 || return 1
    line=$("$1" -version 2>&1 | grep -m1 -E 'version "') || return 1
    v=$(sed -n 's/.*version "\([0-9][0-9]*\)\(\.\([0-9][0-9]*\)\)\{0,1\}.*/\1 \3/p' <<<"$line")
    [[ -n $v ]] || return 1
    # "1.8.0_x" -> 8, "17.0.15" -> 17, "21-ea" -> 21
    if [[ ${v%% *} == 1 ]]; then v=${v##* }; else v=${v%% *}; fi
    [[ $v =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$v"
}

# svc_find_java MIN FOR [VAR]: set JAVA to a Java MIN+ (FOR says what needs it), from the first
# of: $VAR (a java binary or a JDK dir; must be MIN+), $JAVA_HOME, `java` on PATH, the newest
# /usr/lib/jvm/*/bin/java. Dies when there is none.
svc_find_java() {
    local min=$1 for=$2 var=${3:-} cand major best="" best_major=0 tried=""
    if [[ -n $var && -n ${!var:-} ]]; then
        cand=${!var}
        [[ -d $cand ]] && cand="$cand/bin/java"
        major=$(svc_java_major "$cand") || die "$var=${!var} is not a working java"
        ((major >= min)) || die "$var=${!var} is Java $major; $for needs Java $min+"
        JAVA=$cand
        return 0
    fi
    if [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then
        if major=$(svc_java_major "$JAVA_HOME/bin/java") && ((major >= min)); then
            JAVA="$JAVA_HOME/bin/java"
            return 0
        fi
        tried+="JAVA_HOME=$JAVA_HOME (Java ${major:-?}); "
    fi
    if cand=$(command -v java 2>/dev/null); then
        if major=$(svc_java_major "$cand") && ((major >= min)); then
            JAVA=$cand
            return 0
        fi
        tried+="$cand on PATH (Java ${major:-?}); "
    fi
    for cand in /usr/lib/jvm/*/bin/java; do
        [[ -x $cand ]] || continue
        major=$(svc_java_major "$cand") || continue
        if ((major >= min && major > best_major)); then
            best=$cand
            best_major=$major
        fi
    done
    if [[ -n $best ]]; then
        JAVA=$best
        return 0
    fi
    tried+="/usr/lib/jvm/*/bin/java (none is $min+)"
    die "$for needs Java $min+, and none was found. Tried: $tried. Install a JDK $min+ or set ${var:-JAVA_HOME}=/path/to/jdk."
}

# svc_mvn DIR WHAT ARGS...: run Maven quietly in DIR to fetch WHAT (output in STATE/mvn.log);
# dies with that output if it fails.
svc_mvn() {
    local dir=$1 what=$2
    shift 2
    command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed once to fetch $what; install maven"
    if ! (cd "$dir" && mvn -B -q -Dstyle.color=never "$@") >"$STATE/mvn.log" 2>&1; then
        cat "$STATE/mvn.log" >&2
        die "Maven could not fetch $what (full output above and in $STATE/mvn.log)"
    fi
}

# svc_alive PID: running and not a zombie.
svc_alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    if [[ -r /proc/$1/stat ]]; then
        st=$(<"/proc/$1/stat") || return 1
        st=${st##*) }
        [[ ${st%% *} != Z ]]
    fi
}

# svc_cmdline PID: that process's arguments, one a line.
svc_cmdline() {
    if [[ -r /proc/$1/cmdline ]]; then
        tr '\0' '\n' <"/proc/$1/cmdline"
    else
        ps -o args= -p "$1" 2>/dev/null | tr ' ' '\n'
    fi
}

# svc_our_pid: the pid of the process this script started for this state dir, if alive.
svc_our_pid() {
    local pid args
    [[ -f $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE") || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    svc_alive "$pid" || return 1
    args=$(svc_cmdline "$pid") || return 1
    grep -qxF -e "$MARKER" <<<"$args" || return 1
    printf '%s\n' "$pid"
}

# svc_ready_for PID: that very process already passed the readiness check for this setup.
svc_ready_for() {
    [[ -f $READYFILE && "$(<"$READYFILE")" == "$1 ${READY_TAG:-$PORT}" ]]
}

# svc_lock: hold the state dir's lock (fd 9) until exit; waits for a start or stop under way.
svc_lock() {
    exec 9>"$LOCKFILE"
    if ! flock -n 9; then
        say "another $SVC is starting/stopping the $NOUN; waiting for it (lock $LOCKFILE) ..."
        flock -w "$SVC_LOCK_WAIT" 9 || die "timed out after ${SVC_LOCK_WAIT}s waiting for $LOCKFILE"
    fi
}

# svc_launch DIR COMMAND...: start COMMAND in DIR, detached, output to LOGFILE; sets SVC_PID.
svc_launch() {
    local dir=$1 i
    shift
    if [[ -f $LOGFILE ]]; then mv -f "$LOGFILE" "$LOGFILE.1"; fi
    rm -f "$PIDFILE" "$READYFILE"
    # setsid + nohup: survives this script and its terminal. The inner bash writes its own
    # pid and then execs COMMAND, so the pid file holds COMMAND's pid. 9>&- : it must not
    # inherit (and so hold) the lock. stdin/stdout/stderr detached from the caller so that
    # "$(dev/kafka)" returns. Running in DIR, it does not pin the caller's working directory.
    # (A simple command, not a list or subshell, is put in the background so that no forked
    # copy of this script lingers holding the caller's stdout and the lock.)
    # shellcheck disable=SC2016
    setsid nohup bash -c 'echo $$ >"$1"; cd "$2" || exit 1; shift 2; exec "$@"' _ "$PIDFILE" "$dir" "$@" \
        </dev/null >>"$LOGFILE" 2>&1 9>&- &
    for ((i = 0; i < 100; i++)); do
        [[ -s $PIDFILE ]] && break
        sleep 0.05
    done
    [[ -s $PIDFILE ]] || die "$NOUN process did not start (no pid file)"
    SVC_PID=$(<"$PIDFILE")
}

# svc_wait_ready PID: 0 = ready (noted in the ready file), 1 = timed out, 2 = process died.
svc_wait_ready() {
    local pid=$1 deadline left
    deadline=$((SECONDS + START_TIMEOUT))
    say "waiting up to ${START_TIMEOUT}s for the $NOUN to $READY_WHAT ..."
    while ((SECONDS < deadline)); do
        svc_alive "$pid" || return 2
        left=$((deadline - SECONDS))
        ((left < 5)) && left=5
        ((left > 20)) && left=20
        if svc_probe "$left"; then
            printf '%s %s\n' "$pid" "${READY_TAG:-$PORT}" >"$READYFILE"
            return 0
        fi
        svc_alive "$pid" || return 2
        sleep 0.5
    done
    return 1
}

# svc_show_log_tail: the end of the log (and of PROBE_LOG, if set), on stderr.
svc_show_log_tail() {
    {
        echo "----- last lines of $LOGFILE -----"
        tail -n 40 "$LOGFILE" 2>/dev/null || true
        if [[ -n ${PROBE_LOG:-} && -s $PROBE_LOG ]]; then
            echo "----- last readiness check ($PROBE_LOG) -----"
            tail -n 10 "$PROBE_LOG"
        fi
        echo "-----"
    } >&2
}

# svc_kill: stop our process (SIGTERM, SIGKILL after 30 s); fails if none runs. Hold the lock.
svc_kill() {
    local pid i
    if ! pid=$(svc_our_pid); then
        rm -f "$PIDFILE" "$READYFILE"
        return 1
    fi
    say "stopping $NOUN (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        svc_alive "$pid" || break
        sleep 0.1
    done
    if svc_alive "$pid"; then
        say "$NOUN did not exit within 30s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            svc_alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE" "$READYFILE"
    say "stopped"
    return 0
}

svc_prepare() { :; }
svc_mismatch() {
    local port
    port=$(svc_running_port "$1")
    [[ $port == "$PORT" ]] && return 1
    echo "listens on port ${port:-?}, not $PORT"
}
svc_configure() { :; }
svc_recover() { return 1; }

svc_reuse() { # svc_reuse PID
    say "reusing running $NOUN (pid $1)"
    svc_print "$PORT"
}

# svc_start: the `start` command: reuse ours if it is ready (waiting for one being started),
# else (re)start it; then svc_print. Exits 1 when it cannot.
svc_start() {
    local pid rc t0=$SECONDS why attempt
    mkdir -p "$STATE"

    # Fast path (no lock): ours is up, was ready for this setup, and answers.
    if pid=$(svc_our_pid) && svc_ready_for "$pid" && ! svc_mismatch "$pid" >/dev/null && svc_up "$PORT"; then
        svc_reuse "$pid"
        return 0
    fi

    svc_lock
    svc_prepare

    if pid=$(svc_our_pid); then
        if why=$(svc_mismatch "$pid"); then
            say "running $NOUN (pid $pid) $why; restarting it"
        elif svc_ready_for "$pid" && svc_up "$PORT"; then
            svc_reuse "$pid"
            return 0
        else
            # Started by someone who did not see it through (or not answering): wait on it.
            rc=0
            svc_wait_ready "$pid" || rc=$?
            if ((rc == 0)); then
                svc_reuse "$pid"
                return 0
            fi
            say "running $NOUN (pid $pid) does not answer; restarting it"
        fi
        svc_kill || true
    fi
    rm -f "$PIDFILE" "$READYFILE"

    if svc_port_open "$HOST" "$PORT" || svc_port_open "$HOST" "$SECOND_PORT"; then
        die "port $PORT or $SECOND_PORT on $HOST is already taken by a process $SVC did not start; stop it or set $PORT_VAR"
    fi
    svc_configure
    for attempt in 1 2; do
        svc_spawn
        pid=$SVC_PID
        rc=0
        svc_wait_ready "$pid" || rc=$?
        if ((rc == 0)); then
            say "$NOUN ready in $((SECONDS - t0))s (pid $pid)"
            svc_print "$PORT"
            return 0
        fi
        if ((rc == 2 && attempt == 1)) && svc_recover; then
            rm -f "$PIDFILE"
            continue
        fi
        break
    done
    svc_show_log_tail
    if ((rc == 2)); then
        rm -f "$PIDFILE"
        die "$NOUN process exited during startup (see $LOGFILE)"
    fi
    svc_kill >/dev/null 2>&1 || true
    die "$NOUN did not $READY_WHAT within ${START_TIMEOUT}s (see $LOGFILE); stopped it"
}

# svc_stop: the `stop` command; succeeds when none runs.
svc_stop() {
    if [[ ! -d $STATE ]]; then
        say "no $NOUN running"
        return 0
    fi
    svc_lock
    svc_kill || say "no $NOUN running"
    return 0
}

# svc_status: the `status` command: 0 and svc_print if ours runs, else 3.
svc_status() {
    local pid port ready_pid="" ready_port=""
    if pid=$(svc_our_pid); then
        port=$(svc_running_port "$pid")
        port=${port:-$PORT}
        if [[ -f $READYFILE ]]; then read -r ready_pid ready_port _ <"$READYFILE" || true; fi
        if [[ $ready_pid == "$pid" && $ready_port == "$port" ]] && svc_up "$port"; then
            echo "running (pid $pid, state $STATE)"
        else
            echo "started but not (yet) ready to $READY_WHAT (pid $pid, state $STATE, log $LOGFILE)"
        fi
        svc_print "$port"
        return 0
    fi
    echo "not running (state $STATE)"
    return 3
}
