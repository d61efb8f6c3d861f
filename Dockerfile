# The champion's HTTP service: slim, no torch, non-root. docs/serving.md "Docker".
#   docker build -t retrainer-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" -v "$PWD/logs:/app/logs" \
#       -e RETRAINER_ADMIN_TOKEN=change-me retrainer-serve
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORKDIR /app

# dependencies first (a code change does not reinstall them); the full resolved set pins every
# transitive version, requirements-serve.txt says which packages are installed
COPY requirements.txt requirements-serve.txt ./
RUN pip install -r requirements-serve.txt -c requirements.txt \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# the service and the few stage helpers it shares (sessions, params, artifact paths, writes)
COPY stages/ stages/
COPY serve/ serve/
COPY params.yaml ./

RUN useradd --system --uid 10001 --no-create-home --home-dir /app serve \
    && mkdir -p /app/models /app/logs && chown serve /app/logs
USER serve

# the champion (models/champion.json + models/champion/) is mounted at /app/models; the
# prediction log goes to /app/logs/predictions (serve.log_dir)
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
STOPSIGNAL SIGTERM
CMD ["python", "-m", "serve", "--host", "0.0.0.0", "--port", "8000"]
