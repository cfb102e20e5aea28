"""With several workers, one scrape of /metrics counts the requests of all of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.redis_server import free_port


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "promptstack"),
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'workers.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "WARNING",
    }
    (tmp_path / "metrics").mkdir()  # prometheus-client needs it to exist when it loads
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        served = 0
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    served += 1
                    break
            except httpx.HTTPError:
                time.sleep(0.05)  # polling for start-up
        assert served, log.read_text()
        for _ in range(40):
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        process.terminate()
        process.wait(timeout=30)
    match = re.search(
        r'promptstack_http_requests_total\{method="GET",route="/health",status_class="2xx"\} '
        r"([0-9.]+)",
        text,
    )
    assert match, text[-2000:]
    assert float(match.group(1)) == 41
    assert len(list((tmp_path / "metrics").glob("counter_*.db"))) >= 2
