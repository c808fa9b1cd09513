# One image for the worker, beat, Flower and the example chat server (docker-compose.yml picks
# the command). Multi-stage: uv resolves and installs into /app/.venv from the lock file in the
# build stage; the runtime stage copies the result and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (cached while only the source changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra examples --no-install-project
COPY producer ./producer
COPY schemas ./schemas
COPY worker ./worker
COPY examples ./examples
RUN uv sync --frozen --no-dev --extra examples --no-editable

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 reverie \
 && useradd --system --uid 10001 --gid reverie --home-dir /app --shell /usr/sbin/nologin reverie
WORKDIR /app
COPY --from=build --chown=reverie:reverie /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    REVERIE_DATA_DIR=/app/data
RUN mkdir -p /app/data && chown reverie:reverie /app/data
USER reverie:reverie
EXPOSE 5555 8000 9808
CMD ["reverie", "worker"]
