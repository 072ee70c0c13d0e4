"""The xApp's HTML pages work air-gapped: the API docs load only assets the xApp serves itself, and a real
browser (headless Chromium) renders the operations list."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from service.app import XApp
from service.config import Settings

REPO = Path(__file__).resolve().parents[2]
URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")  # absolute and protocol-relative URLs
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*['"]([^'"]+)['"]""")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture
async def xapp():
    app = XApp(Settings(http_port=0, grpc_port=0, http_host="127.0.0.1", grpc_host="127.0.0.1", buffer="memory"))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def html_routes(xapp: XApp) -> list[str]:
    """Every parameter-free GET route of the REST app (the HTML pages among them are found by content type)."""
    paths = []
    for r in xapp.rest_app.routes:
        if isinstance(r, (APIRoute, Route)) and "GET" in (r.methods or set()) and "{" not in r.path:
            paths.append(r.path)
    return paths


async def test_no_served_html_names_an_outside_url(xapp):
    base = f"http://127.0.0.1:{xapp.http_port}"
    pages = {}
    async with httpx.AsyncClient(base_url=base) as http:
        for path in html_routes(xapp):
            r = await http.get(path)
            if r.headers.get("content-type", "").startswith("text/html"):
                pages[path] = r.text
        assert {"/docs", "/redoc"} <= set(pages), sorted(pages)
        for path, html in pages.items():
            outside = [u for u in URL.findall(html) if urlsplit(urljoin(base, u)).netloc != urlsplit(base).netloc]
            assert not outside, f"{path} names URLs outside the xApp's origin: {outside}"
            for groups in ASSET.findall(html):  # every asset the page loads is served by the xApp
                ref = next(g for g in groups if g)
                if ref.startswith(("#", "data:")):
                    continue
                asset = await http.get(urljoin(base + path, ref))
                assert asset.status_code == 200 and asset.content, f"{path}: {ref} → {asset.status_code}"


@pytest.mark.browser
async def test_docs_render_the_operations_in_a_real_browser(xapp):
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (`apt-get install chromium`; .ci/run installs it)")
    url = f"http://127.0.0.1:{xapp.http_port}/docs"
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    shot = reports / "api-docs.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ms3m-chromium-") as profile:
        flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1280,1600"]
        # the browser runs while the test's event loop serves the page: run it in a worker thread
        import asyncio

        dom = await asyncio.to_thread(subprocess.run, [*flags, "--dump-dom", url], capture_output=True, text=True,
                                      timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        shot_run = await asyncio.to_thread(subprocess.run, [*flags, f"--screenshot={shot}", url],
                                           capture_output=True, text=True, timeout=120)
        assert shot_run.returncode == 0, shot_run.stderr[-2000:]
    html = dom.stdout
    # Swagger UI renders one "opblock" per operation, with its path; the raw page has none of them
    operations = re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', html)
    assert len(operations) >= 10, html[:3000]
    for path in ("/v1/predict", "/ric/v1/health/ready", "/A1-P/v2/policytypes"):
        assert path in operations, f"{path} missing from the rendered operations {operations}"
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
