# One image for every role of the scale-out topology: the API, the relay, the worker
# and the migrations job differ only in the command they run.
#
# Dependencies come from requirements/serve.txt (exported from uv.lock, every file
# pinned by hash); the base image is pinned to a patch release of Python and Debian.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/promptstack
ENV PATH=/opt/promptstack/bin:$PATH
COPY requirements/serve.txt /tmp/serve.txt
RUN pip install --require-hashes -r /tmp/serve.txt
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-deps .

FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/promptstack/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production
COPY --from=build /opt/promptstack /opt/promptstack
# No home, no shell, no write access to the code: the service needs none of them.
RUN useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin promptstack
USER 10001
WORKDIR /tmp
EXPOSE 8000
# The API's liveness; the relay and the worker override or disable it (see the compose
# file).
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["promptstack", "serve", "--host", "0.0.0.0", "--port", "8000"]
