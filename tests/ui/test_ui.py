"""The Dagster UI in headless Chromium: the asset graph, the crawl partitions and the metadata.

Chromium: Playwright's own where installed, else Debian's /usr/bin/chromium (`make test`
installs it when running as root). The test skips, saying why, only where neither exists.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _browser_executable(playwright) -> str | None:
    """None means Playwright's bundled Chromium; skip when there is no browser at all."""
    try:
        if Path(playwright.chromium.executable_path).exists():
            return None
    except Exception:  # noqa: BLE001 - no bundled browser registered
        pass
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no Chromium: `playwright install chromium` could not run and Debian's chromium "
                "package is not installed (`make test` installs it when run as root)")


@pytest.fixture(scope="module")
def webserver(pipeline_home):
    home, dagster_home = pipeline_home
    port = _free_port()
    env = {**os.environ, "LMPIPE_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    process = subprocess.Popen(
        [str(webserver_bin), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("dagster-webserver did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(webserver):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        executable = _browser_executable(playwright)
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def test_global_lineage_shows_every_group(webserver, page):
    page.goto(f"{webserver}/asset-groups", wait_until="domcontentloaded")
    for group in ("web", "filter", "dedup", "tokens", "pretrain"):
        page.get_by_text(group, exact=True).first.wait_for(state="visible")


def test_web_group_graph_shows_its_assets(webserver, page):
    page.goto(f"{webserver}/locations/lmpipe/asset-groups/web", wait_until="domcontentloaded")
    page.get_by_text("web_documents").first.wait_for(state="visible")
    page.get_by_text("crawl_files").first.wait_for(state="visible")


def test_crawl_partitions_are_listed(webserver, page):
    page.goto(f"{webserver}/assets/web_documents?view=partitions", wait_until="domcontentloaded")
    page.get_by_text("sample-00000.warc.gz").first.wait_for(state="visible")


def test_materialization_metadata_is_shown(webserver, page):
    page.goto(f"{webserver}/assets/web_documents", wait_until="domcontentloaded")
    page.get_by_text("documents_per_second").first.wait_for(state="visible")
    page.get_by_text("records_by_type").first.wait_for(state="visible")


def test_filter_funnel_is_shown(webserver, page):
    page.goto(f"{webserver}/assets/filtered_documents", wait_until="domcontentloaded")
    page.get_by_text("removed_by_language").first.wait_for(state="visible")
    page.get_by_text("funnel", exact=True).first.wait_for(state="visible")


def test_automation_page_lists_the_sensors_and_the_schedule(webserver, page):
    page.goto(f"{webserver}/automation", wait_until="domcontentloaded")
    for name in ("crawl_file_sensor", "lmpipe_automation_sensor", "refresh_corpus_schedule"):
        page.get_by_text(name).first.wait_for(state="visible")
