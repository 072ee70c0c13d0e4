# syntax=docker/dockerfile:1
# MS³M xApp images, two targets of one multi-stage build:
#
#   serve    (default: the last stage)  the xApp. onnxruntime runs the models; torch is NOT installed.
#            docker build -t ms3m-xapp .
#   trainer  the serving install plus the `train` extra (torch CPU, onnx, pandas): ms3m train/export/eval and
#            ms3m-train-bundle, which writes a bundle unless one exists.
#            docker build --target trainer -t ms3m-xapp-trainer .
#
# Build arguments:
#   PYTHON_IMAGE     base image (default python:3.11-slim)
#   BUNDLE_DIR       folder of the build context copied to /bundles (default deploy/bundles: put a bundle in
#                    deploy/bundles/default to bake it in); otherwise mount bundles at /bundles at run time
#   TORCH_INDEX_URL  trainer: index serving the CPU torch wheel (default https://download.pytorch.org/whl/cpu;
#                    PyPI's torch wheel for Linux pulls several GB of CUDA packages). Empty: torch comes from
#                    pip's configured indexes, e.g. a local wheel named by find-links in PIP_ARGS.
#   PIP_ARGS         extra pip options for every install (mirrors, --find-links, ...)
#
# The install and start steps are scripts (deploy/install.sh, deploy/entrypoint.sh) so that tests run exactly
# them outside Docker: tests/deploy/test_dockerfile.py.

ARG PYTHON_IMAGE=python:3.11-slim

# -- common base: non-root user 10001, /bundles and /work owned by it, the venv first on PATH ------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 xapp \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/xapp --shell /usr/sbin/nologin xapp \
    && mkdir -p /bundles /work /var/lib/ms3m \
    && chown 10001:10001 /bundles /work /var/lib/ms3m

# -- the project wheel (no dependencies) -------------------------------------------------------------------------
FROM base AS wheel
ARG PIP_ARGS=""
WORKDIR /src
COPY deploy/install.sh /usr/local/bin/ms3m-install
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY contract ./contract
COPY models ./models
COPY service ./service
COPY bench ./bench
RUN PIP_ARGS="$PIP_ARGS" ms3m-install wheel /src /wheels

# -- virtualenvs: serving (no torch: install.sh fails the build if torch slips in) and trainer ------------------
FROM base AS serve-env
ARG PIP_ARGS=""
COPY deploy/install.sh /usr/local/bin/ms3m-install
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv \
    && PYTHON=/opt/venv/bin/python PIP_ARGS="$PIP_ARGS" ms3m-install serve /wheels/ms3m_xapp-*.whl

FROM base AS trainer-env
ARG PIP_ARGS=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY deploy/install.sh /usr/local/bin/ms3m-install
COPY --from=wheel /wheels /wheels
RUN python -m venv /opt/venv \
    && PYTHON=/opt/venv/bin/python PIP_ARGS="$PIP_ARGS" TORCH_INDEX_URL="$TORCH_INDEX_URL" \
       ms3m-install trainer /wheels/ms3m_xapp-*.whl

# -- what both images carry: scripts, bundles, settings ----------------------------------------------------------
FROM base AS runtime
ARG BUNDLE_DIR=deploy/bundles
COPY deploy/entrypoint.sh /usr/local/bin/ms3m-entrypoint
COPY deploy/healthcheck.py /usr/local/bin/ms3m-healthcheck
COPY deploy/train-bundle.sh /usr/local/bin/ms3m-train-bundle
COPY --chown=10001:10001 ${BUNDLE_DIR}/ /bundles/
# the journal of acknowledged samples while Redis is unreachable (README, "Delivery guarantees"): mount a volume
ENV MS3M_JOURNAL_DIR=/var/lib/ms3m/journal \
    MS3M_BUNDLES='["/bundles/default"]' \
    MS3M_HTTP_PORT=8080 \
    MS3M_GRPC_PORT=50051
WORKDIR /work
ENTRYPOINT ["ms3m-entrypoint"]

# -- trainer target ----------------------------------------------------------------------------------------------
FROM runtime AS trainer
COPY --from=trainer-env /opt/venv /opt/venv
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
HEALTHCHECK NONE
CMD ["ms3m-train-bundle", "/bundles/default", "--model", "ms3m", "--data", "synthetic"]

# -- serve target (default) --------------------------------------------------------------------------------------
FROM runtime AS serve
COPY --from=serve-env /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/ms3m-healthcheck", "--path", "/ric/v1/health/ready"]
CMD ["serve"]
