# pageqa image for docker-compose.yml: the locked environment on CUDA-capable PyPI torch wheels.
FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY . .
RUN uv sync --locked --no-dev
ENV PATH="/app/.venv/bin:$PATH" PAGEQA_HOME=/data
ENTRYPOINT ["pageqa"]
