# pageqa image for docker-compose.yml: the locked environment on CUDA-capable PyPI torch wheels.
FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
# The packages only, not the working tree: a .env holding the deployment's secrets must not end up in a layer.
COPY api api
COPY db db
COPY models models
COPY pageqa pageqa
COPY scripts scripts
COPY services services
COPY tasks tasks
COPY worker worker
RUN uv sync --locked --no-dev
# Not root (Celery warns against it for workers); named volumes mounted on /data and /hf-cache start out with the
# ownership of these directories.
RUN useradd --create-home --uid 1000 pageqa && mkdir /data /hf-cache && chown pageqa /data /hf-cache
USER pageqa
ENV PATH="/app/.venv/bin:$PATH" PAGEQA_HOME=/data
EXPOSE 8000 5555
ENTRYPOINT ["pageqa"]
