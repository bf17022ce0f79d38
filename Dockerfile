# adaserve: the REST service on its embedded default (a data directory in a volume).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ADASERVE_HOST=0.0.0.0 ADASERVE_PORT=8080 ADASERVE_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY optim ./optim
COPY service ./service
COPY adaserve_cli ./adaserve_cli
RUN pip install . && useradd --create-home --uid 10001 adaserve \
    && mkdir -p /data && chown adaserve /data

USER adaserve
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"
CMD ["adaserve", "serve"]
