# GPU image: the CUDA build of vLLM with the gateway in front. Build: docker build -t empathy-router .
# The base image carries the vLLM that pyproject's `gpu` extra pins (and its torch), so pip keeps them.
# Run: docker run --gpus all -p 8080:8080 -v $PWD/.empathy:/data empathy-router
FROM vllm/vllm-openai:v0.32.0

ENV EMPATHY_DATA_DIR=/data \
    EMPATHY_HOST=0.0.0.0 \
    EMPATHY_PORT=8080 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY empathy ./empathy
COPY selection ./selection
COPY training ./training
COPY serve ./serve
COPY ui ./ui
# The project itself (a local path): its pins live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[gpu,postgres]"

VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"]
ENTRYPOINT ["empathy", "serve"]
