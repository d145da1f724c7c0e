"""A real Prometheus server (Debian's ``prometheus``, started by the test on a free loopback
port with its own data folder) scrapes the sample host's /metrics and answers a query."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("svrnty_sample")

from output_process import OutputProcess  # noqa: E402
from svrnty_sample.app import default_config_path  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
TIMEOUT = 60.0
#: the gauge the query asks for
METRIC = "svrnty_events_subscription_lag"

pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus is not installed (apt install prometheus)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, expression: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


def scraped_lags(target: str) -> dict[str, float]:
    """group -> lag of invitation-processor, read from the host's own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.labels["group"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == METRIC
            and sample.labels.get("subscription") == "invitation-processor"}


def post_json(url: str, payload: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_prometheus_scrapes_the_sample_host(tmp_path: Path) -> None:
    config = tmp_path / "sample.toml"
    config.write_text(default_config_path().read_text()
                      + '\n[telemetry]\nstore_gauge_interval = 0.1\n'
                        '[telemetry.prometheus]\nport = 0\n')
    env = dict(os.environ, PYTHONUNBUFFERED="1", SVRNTY_EVENTS_PLUGINS="memory,grpc,telemetry")
    host = OutputProcess([sys.executable, "-m", "svrnty_sample", "--config", str(config),
                          "--grpc-port", "0", "--http-port", "0"], env)
    prometheus = None
    try:
        host.wait_for(r"^svrnty-events host started")
        metrics = host.wait_for(r"endpoint:\s+metrics http://(127\.0\.0\.1:\d+)/metrics").group(1)
        http_url = host.wait_for(r"endpoint:\s+(http://127\.0\.0\.1:\d+)/docs\s").group(1)
        # three invitations: the sample's own consumer processes them (invitation-processor)
        for n in range(3):
            assert post_json(f"{http_url}/api/command/inviteUser",
                             {"email": f"user{n}@example.com"}) == 200

        port = free_port()
        scrape = tmp_path / "prometheus.yml"
        scrape.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: svrnty\n    static_configs:\n"
                          f"      - targets: ['{metrics}']\n")
        assert subprocess.run(["promtool", "check", "config", str(scrape)],
                              capture_output=True).returncode == 0
        prometheus = OutputProcess([PROMETHEUS, f"--config.file={scrape}",
                                    f"--storage.tsdb.path={tmp_path / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], dict(os.environ))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT
        result: list[dict] = []
        # every group settled what was appended: the host's own /metrics says 0, and the
        # Prometheus server, scraping it, answers the same for each group of the subscription
        while time.monotonic() < deadline:
            result = query(base, f'{METRIC}{{subscription="invitation-processor"}}')
            if result and all(float(r["value"][1]) == 0 for r in result) \
                    and scraped_lags(metrics) == {r["metric"]["group"]: 0.0 for r in result}:
                break
            time.sleep(0.2)
        assert result, "Prometheus never had the metric; its output:\n" + \
            "\n".join(prometheus.lines[-20:])
        assert {r["metric"]["job"] for r in result} == {"svrnty"}
        assert {r["metric"]["group"]: float(r["value"][1]) for r in result} == \
            scraped_lags(metrics) == {"shared": 0.0}
        up = query(base, 'up{job="svrnty"}')
        assert up and float(up[0]["value"][1]) == 1
    finally:
        if prometheus is not None:
            prometheus.stop()
        host.stop()
