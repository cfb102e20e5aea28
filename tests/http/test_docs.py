"""The interactive docs work offline: every file the pages load comes from this app."""

from __future__ import annotations

import re

import httpx
import pytest

from promptstack.main import create_app
from tests.fixtures.support import Api

# What a page loads: scripts, styles, icons, and the spec the viewer fetches.
_LOADED = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|\burl:\s*'([^']+)'""")


def _loaded(html: str) -> list[str]:
    return [first or second for first, second in _LOADED.findall(html)]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png", "openapi.json"}),
    ],
)
async def test_a_docs_page_loads_only_files_this_app_serves(
    api: Api, page: str, expected: set[str]
) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    urls = _loaded(response.text)
    assert {url.rsplit("/", 1)[-1] for url in urls} == expected
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    script = next(url for url in urls if url.endswith(".js"))
    assert "javascript" in (await api.client.get(script)).headers["content-type"]


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"])
async def test_the_docs_policy_admits_no_other_origin(api: Api, page: str) -> None:
    policy = (await api.client.get(page)).headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    for sources in directives.values():
        assert "http" not in sources
        assert "*" not in sources


async def test_the_oauth2_redirect_page_is_served(api: Api) -> None:
    response = await api.client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()


async def test_an_api_answer_keeps_the_strict_policy(api: Api) -> None:
    # A path that only starts like the docs' files is not one of them.
    response = await api.client.get("/docs/assetsx")
    assert response.status_code == 404
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_the_pages_follow_a_proxy_prefix(api: Api) -> None:
    transport = httpx.ASGITransport(app=create_app(container=api.container), root_path="/edge")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        html = (await client.get("/docs")).text
    urls = _loaded(html)
    assert urls
    assert all(url.startswith("/edge/") for url in urls), urls
