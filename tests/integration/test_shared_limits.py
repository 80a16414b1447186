"""One limit for every worker: two `yotsuba scrape` processes reporting to a real Prefect server share Arctic
Shift's pace through a Prefect global concurrency limit with slot decay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from fakes.arctic import FakeArcticShift
from fakes.reddit import FakeReddit
from tests.integration.test_orchestration import free_port, start, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
RATE = 4.0


def test_two_processes_on_a_prefect_server_share_one_pace(tmp_path: Path):
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("YOTSUBA_", "PREFECT_", "MLFLOW_"))}
    base.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], base,
                   tmp_path / "prefect-server.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", server, tmp_path / "prefect-server.log")
        with FakeReddit() as world, FakeArcticShift(world) as archive:
            for sub in ("Nakano_Miku", "NakanoNino"):
                for i in range(250):
                    world.add_post(sub, f"art {i}", url=f"https://i.redd.it/{sub}{i}.jpeg")
            scrapes = []
            for name, sub in (("miku", "Nakano_Miku"), ("nino", "NakanoNino")):
                job = tmp_path / f"{name}.yaml"
                job.write_text(f"name: {name}\nlabels: [{{name: {name}, sources: [{{kind: subreddit_posts, "
                               f"subreddit: {sub}}}]}}]\n")
                env = {**base, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                       "YOTSUBA_DATA_DIR": str(tmp_path / name), "YOTSUBA_ARCTIC_SHIFT_BASE_URL": archive.url,
                       "YOTSUBA_ARCTIC_SHIFT_REQUESTS_PER_SECOND": str(RATE)}
                scrapes.append(subprocess.Popen([str(BIN / "yotsuba"), "scrape", str(job), "--json"], env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            outputs = [process.communicate(timeout=300) for process in scrapes]
            assert [p.returncode for p in scrapes] == [0, 0], [err[-2000:] for _, err in outputs]
            searches = archive.requests_to(r"^/api/posts/search$")
            name = f"yotsuba-arctic-shift-{archive.url.split('//')[1]}"

        assert {r.query["subreddit"][0] for r in searches} == {"Nakano_Miku", "NakanoNino"} and len(searches) == 6
        times = sorted(r.at for r in searches)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # Without the server's limit, two processes send at once; with it, no two requests close together (the
        # arrivals jitter with the machine's load).
        assert min(gaps) >= 0.5 / RATE, gaps
        limit = requests.get(f"http://127.0.0.1:{port}/api/v2/concurrency_limits/{name}", timeout=10).json()
        assert limit["slot_decay_per_second"] == RATE and limit["limit"] == 1
    finally:
        stop(server)
