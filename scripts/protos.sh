#!/usr/bin/env bash
# Generate the Python modules of the plugin wire contract, or check them.
#
#   scripts/protos.sh generate   protos/*.proto -> nebula/sandbox/proto/
#   scripts/protos.sh check      regenerate into a temporary directory and
#                                fail (with a diff) if the committed modules
#                                differ: a .proto edited without regenerating,
#                                a generated file edited by hand, or a stale
#                                module whose .proto is gone.
#
# protoc runs with `-I nebula/sandbox/proto=protos`: protoc then believes the
# sources live in the package directory, so the generated modules import each
# other as `from nebula.sandbox.proto import x_pb2` instead of the top-level
# `import x_pb2` that plain `-I protos` produces (which only works with the
# directory on sys.path). The cost: a .proto importing another writes
# `import "nebula/sandbox/proto/other.proto";`.
#
# The generated modules are committed (plugins and the daemon must not need
# grpcio-tools at run time); `check` runs in CI through the lint step.
#
# An empty protos/ is valid: generate does nothing, check compares nothing.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly python="${PYTHON:-.venv/bin/python}"
readonly proto_dir=protos
readonly package_dir=nebula/sandbox/proto

shopt -s nullglob
protos=("$proto_dir"/*.proto)
shopt -u nullglob

log() { printf 'protos: %s\n' "$*" >&2; }

generate_into() {
    # Write the generated modules under root $1 (at $1/$package_dir).
    local root=$1

    ((${#protos[@]})) || return 0
    mkdir -p "$root/$package_dir"

    "$python" -m grpc_tools.protoc \
        -I"$package_dir=$proto_dir" \
        --python_out="$root" \
        --pyi_out="$root" \
        --grpc_python_out="$root" \
        "${protos[@]}"
}

generated_in() {
    # Names of generated modules in directory $1, one per line, sorted.
    [[ -d $1 ]] || return 0
    find "$1" -maxdepth 1 -type f \
        \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \) \
        -printf '%f\n' | sort
}

copy_generated() {
    # Copy the generated modules of directory $1 into directory $2.
    local name

    mkdir -p "$2"
    while read -r name; do
        cp "$1/$name" "$2/$name"
    done < <(generated_in "$1")
}

cmd_generate() {
    local name

    # Remove every old generated module first, so that a deleted .proto does
    # not leave its modules behind.
    while read -r name; do
        rm -f "$package_dir/$name"
    done < <(generated_in "$package_dir")

    generate_into .
    log "generated $(generated_in "$package_dir" | wc -l) modules from ${#protos[@]} .proto files"
}

cmd_check() {
    local tmp

    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" EXIT

    generate_into "$tmp/fresh"
    copy_generated "$package_dir" "$tmp/committed"
    copy_generated "$tmp/fresh/$package_dir" "$tmp/expected"

    if ! diff -ruN "$tmp/committed" "$tmp/expected"; then
        log "generated modules in $package_dir are out of date; run: just protos"
        exit 1
    fi
    log "no drift (${#protos[@]} .proto files)"
}

case "${1:-generate}" in
generate) cmd_generate ;;
check) cmd_check ;;
*)
    log "usage: $0 [generate|check]"
    exit 2
    ;;
esac
