# nebula's tasks. `just --list` shows them.
#
# Every recipe uses the project's virtualenv (.venv) directly, so nothing
# needs activating. `just setup` creates it; so does the README's first line.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
python := venv / "bin/python"

# Show the recipes.
default:
    @just --list

# Create .venv and install nebula with its dev and bench extras.
setup:
    test -x {{ python }} || python3 -m venv {{ venv }}
    {{ python }} -m pip install -q -e '.[dev,bench]'

# Run the daemon with the embedded defaults (127.0.0.1:8080, data in ./var).
run *args:
    {{ python }} -m nebula {{ args }}

# The whole suite: bring up the Docker test engine and image, then pytest.
test *args:
    scripts/docker-test-engine.sh
    {{ venv }}/bin/pytest {{ args }}

# Unit tests only: no Docker, no subprocesses, a few seconds.
test-unit *args:
    {{ venv }}/bin/pytest tests/unit {{ args }}

# Lint, format check, types and generated-code drift; reports every failure.
lint:
    #!/usr/bin/env bash
    # Run every check before failing, so one run shows everything to fix.
    set -uo pipefail
    status=0
    {{ venv }}/bin/ruff check . || status=1
    {{ venv }}/bin/ruff format --check . || status=1
    {{ venv }}/bin/mypy || status=1
    scripts/protos.sh check || status=1
    exit $status

# Format the code and apply ruff's safe fixes.
fmt:
    {{ venv }}/bin/ruff format .
    {{ venv }}/bin/ruff check --fix .

# Regenerate nebula/sandbox/proto/ from protos/*.proto.
protos:
    PYTHON={{ python }} scripts/protos.sh generate

# Fail if the committed generated modules differ from protos/*.proto.
protos-check:
    PYTHON={{ python }} scripts/protos.sh check

# Benchmarks against a baseline measured in the same run (see bench/README.md).
bench *args:
    {{ python }} -m bench {{ args }}
