#!/usr/bin/env bash
# Make a real Docker engine and nebula's test image available, or fail loudly.
#
# Idempotent: every step first checks whether its result already exists, so
# running it twice (or from two shells at once, thanks to the lock) is cheap
# and safe. Steps:
#
#   1. If `docker info` answers, use that engine as it is.
#   2. Otherwise, as root on Debian: install `docker.io` (engine + CLI),
#      `busybox-static` and `iptables` with apt, running `apt-get update`
#      only when a package has no install candidate yet.
#   3. Start the engine: through systemd when systemd runs the host, else
#      `dockerd` in the background with its log in $NEBULA_DOCKERD_LOG.
#      Wait for `docker info` up to $NEBULA_DOCKERD_WAIT_S seconds; on timeout
#      print the log's tail and exit non-zero.
#   4. Build the test image ($NEBULA_TEST_IMAGE) without any registry: a root
#      file system holding a static busybox and one link per applet, tarred
#      and fed to `docker import`. Skipped when the image already exists.
#   5. Prove the image runs: `docker run --rm <image> echo ok`.
#
# There is no registry on the machines this runs on: nothing here pulls.
#
# Environment:
#   NEBULA_TEST_IMAGE      tag to build/check   (nebula-test/busybox:latest)
#   NEBULA_DOCKERD_LOG     dockerd's log file   (/var/log/nebula-dockerd.log)
#   NEBULA_DOCKERD_WAIT_S  start-up deadline    (60)
#   DOCKER_HOST            honoured; a non-local DOCKER_HOST that does not
#                          answer is an error, since starting a local dockerd
#                          would not make it answer.

set -euo pipefail

readonly image="${NEBULA_TEST_IMAGE:-nebula-test/busybox:latest}"
readonly dockerd_log="${NEBULA_DOCKERD_LOG:-/var/log/nebula-dockerd.log}"
readonly dockerd_wait_s="${NEBULA_DOCKERD_WAIT_S:-60}"
readonly lock_file="${NEBULA_DOCKER_LOCK:-/tmp/nebula-docker-test-engine.lock}"

log() { printf 'docker-test-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

engine_answers() {
    # `docker info` can hang on a wedged socket; bound it.
    command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

# --- 2. packages -------------------------------------------------------------

apt_updated=0
dockerd_pid=""  # set when this run started dockerd itself

apt_install() {
    # Install the given Debian packages, refreshing the package lists at most
    # once per run and only when some package has no candidate (fresh images
    # ship with empty lists).
    local pkg policy
    local need_update=0

    for pkg in "$@"; do
        # Capture first: `apt-cache | grep -q` under pipefail fails whenever
        # grep stops reading early and apt-cache gets SIGPIPE.
        policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
        [[ $policy == *"Candidate: "[!\(]* ]] || need_update=1
    done

    if [[ $need_update == 1 && $apt_updated == 0 ]]; then
        log "apt-get update"
        apt-get update -q >&2
        apt_updated=1
    fi

    log "apt-get install $*"
    # stdout to stderr: callers capture this script's functions' stdout.
    # 9>&-: a package script may start a service; it must not inherit the lock.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "$@" >&2 9>&-
}

install_engine_packages() {
    local missing=()

    [[ $EUID == 0 ]] || die "no Docker engine answers and installing one needs root; run as root or start dockerd yourself"
    command -v apt-get >/dev/null || die "no Docker engine answers and this is not a Debian-like host (no apt-get); install Docker yourself"

    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    command -v iptables >/dev/null || missing+=(iptables)

    if ((${#missing[@]})); then
        # Deduplicate (docker.io can be listed twice).
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_install "${missing[@]}"
    fi
}

# --- 3. start the engine -----------------------------------------------------

dockerd_host_is_local() {
    # An unset DOCKER_HOST, or one naming the default socket, is served by the
    # dockerd we can start here. Anything else is somebody else's engine.
    [[ -z ${DOCKER_HOST:-} || ${DOCKER_HOST} == unix:///var/run/docker.sock ||
        ${DOCKER_HOST} == unix:///run/docker.sock ]]
}

start_engine() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        # A systemd host: the docker.io package ships a unit; let systemd own
        # the daemon rather than leaving an orphan beside it.
        log "starting docker.service through systemd"
        systemctl start docker.service 9>&-
        return
    fi

    if [[ -s /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        # A dockerd exists but did not answer yet (still starting, or stuck):
        # a second one would fight it over /var/run/docker.pid.
        log "dockerd is already running (pid $(cat /var/run/docker.pid)); waiting for it"
        return
    fi

    if ! mountpoint -q /sys/fs/cgroup; then
        # Without systemd nobody mounted the cgroup hierarchy, and dockerd
        # cannot run containers without it. Debian's cgroupfs-mount does what
        # docker.io's init script would do.
        command -v cgroupfs-mount >/dev/null || apt_install cgroupfs-mount
        log "mounting cgroups with cgroupfs-mount"
        cgroupfs-mount
    fi

    mkdir -p "$(dirname "$dockerd_log")"
    log "starting dockerd in the background, log in $dockerd_log"
    # setsid + nohup: the engine must outlive this script and the shell (and
    # CI step) that ran it, and must not receive that shell's SIGHUP/SIGINT.
    # 9>&-: fd 9 holds this script's lock; an engine that inherited it would
    # hold the lock for its whole life and every later run would time out.
    setsid nohup dockerd >>"$dockerd_log" 2>&1 </dev/null 9>&- &
    dockerd_pid=$!
    log "dockerd pid $dockerd_pid"
}

wait_for_engine() {
    local deadline=$((SECONDS + dockerd_wait_s))
    local why

    until engine_answers; do
        why=""
        if [[ -n $dockerd_pid ]] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
            # It died: waiting out the deadline would only delay the verdict.
            why="dockerd (pid $dockerd_pid) exited"
        elif ((SECONDS >= deadline)); then
            why="dockerd did not answer within ${dockerd_wait_s}s"
        fi

        if [[ -n $why ]]; then
            log "$why; last lines of $dockerd_log:"
            tail -n 40 "$dockerd_log" >&2 2>/dev/null || log "(no log at $dockerd_log)"
            die "Docker engine unavailable"
        fi
        sleep 0.5
    done
}

ensure_engine() {
    if engine_answers; then
        log "Docker engine answers: server $(docker version --format '{{.Server.Version}}')"
        return
    fi

    dockerd_host_is_local || die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for a remote host"

    install_engine_packages
    start_engine
    wait_for_engine
    log "Docker engine up: server $(docker version --format '{{.Server.Version}}')"
}

# --- 4. the test image -------------------------------------------------------

find_static_busybox() {
    # Debian's busybox-static installs /bin/busybox. The image has no libc, so
    # a dynamically linked busybox (the plain `busybox` package) would not run.
    local bb=/bin/busybox

    if [[ ! -x $bb ]] || ! dpkg -s busybox-static >/dev/null 2>&1; then
        [[ $EUID == 0 ]] || die "busybox-static is not installed and installing it needs root"
        apt_install busybox-static
    fi

    if ldd "$bb" >/dev/null 2>&1; then
        die "$bb is dynamically linked; the test image needs busybox-static's binary"
    fi
    printf '%s\n' "$bb"
}

make_rootfs() {
    # Fill directory $1 with a minimal root file system around busybox $2.
    local root=$1 bb=$2 applet

    mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev,var/www}
    chmod 1777 "$root/tmp"
    cp "$bb" "$root/bin/busybox"

    # One relative link per applet: sh, sleep, echo, cat, ls, httpd, env,
    # true, false, wget, ps, top, ... (all live in /bin, which is on PATH).
    while read -r applet; do
        [[ $applet == busybox ]] && continue
        ln -sf busybox "$root/bin/$applet"
    done < <("$bb" --list)

    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    printf 'nebula test image\n' >"$root/var/www/index.html"
}

ensure_image() {
    local bb workdir

    if docker image inspect "$image" >/dev/null 2>&1; then
        log "test image $image exists"
        return
    fi

    bb=$(find_static_busybox)
    workdir=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $workdir now, not at exit
    trap "rm -rf '$workdir'" EXIT

    make_rootfs "$workdir/rootfs" "$bb"
    log "importing $image from $bb ($("$bb" --list | wc -l) applets)"
    tar --numeric-owner --owner=0 --group=0 -C "$workdir/rootfs" -cf - . |
        docker import \
            --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["sh"]' \
            --message "nebula test image: static busybox, no registry" \
            - "$image" >/dev/null

    rm -rf "$workdir"
    trap - EXIT
}

check_image() {
    local out

    out=$(timeout 60 docker run --rm "$image" echo ok) ||
        die "docker run --rm $image echo ok failed"
    [[ $out == ok ]] || die "docker run --rm $image echo ok printed '$out', expected 'ok'"
    log "test image $image runs"
}

main() {
    # Serialise concurrent runs (parallel CI jobs, two terminals): only one
    # may start dockerd or import the image.
    exec 9>"$lock_file"
    flock -w 300 9 || die "timed out waiting for $lock_file"

    ensure_engine
    ensure_image
    check_image
}

# Sourcing the file (for testing its functions) must not run it.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
