# One image for every role of the scale-out topology: the API, the relay, the worker
# and the migrations job differ only in the command they run.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[postgres]' && useradd --create-home --uid 10001 promptstack
USER promptstack

EXPOSE 8000
CMD ["promptstack", "serve", "--host", "0.0.0.0", "--port", "8000"]
