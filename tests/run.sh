#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine with Python 3.11, then runs
# lint, types and the whole suite (PostgreSQL, model and slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use to build inputs (sox, ffmpeg, espeak-ng) and render notes (chromium).
need=()
for tool in sox ffmpeg espeak-ng chromium; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for tool in "${need[@]}"; do
    case "$tool" in sox) pkgs+=(sox libsox-fmt-all) ;; *) pkgs+=("$tool") ;; esac
  done
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# PostgreSQL: use the local server (start it if it is installed but stopped).
export JOZVESAZ_TEST_DATABASE_URL="${JOZVESAZ_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

python3.11 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[models,postgres,gpu,dev,bench]'

.venv/bin/ruff check jozvesaz_cli tests bench
.venv/bin/mypy
set +e
# The JUnit report keeps the figures tests record (peak memory, RSS over 300 files) with the run.
.venv/bin/pytest -m "" -p no:cacheprovider --junitxml=tests/artifacts/junit.xml "$@"
status=$?
set -e
# pytest exits 5 when nothing was collected: that is a broken suite, not a pass.
if [ "$status" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$status"
