"""`allocation api` with API_TOKEN_FILE on the real stack: 401 without the token, 2xx with it."""

from __future__ import annotations

from pathlib import Path

import httpx

from allocation.config import Settings
from testkit.processes import Service, free_port, service_env, wait_until
from tests.conftest import random_batchref, random_sku

TOKEN = "e2e-s3cret-api-token"


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_api_process_needs_the_bearer_token_from_its_file(
    e2e_settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = service_env(e2e_settings, API_TOKEN_FILE=str(tmp_path / "token"))
    env.pop("API_TOKEN", None)
    port = free_port()
    api = Service(["api", "--port", str(port)], env, tmp_path, "api").start()
    url = f"http://127.0.0.1:{port}"
    batch = {"ref": random_batchref(), "sku": random_sku(), "qty": 5}
    try:
        wait_until(lambda: api.running and answers(f"{url}/readyz"), 60, "the API to answer")

        refused = httpx.post(f"{url}/batches", json=batch, timeout=10)
        wrong = httpx.post(
            f"{url}/batches", json=batch, headers={"Authorization": "Bearer nope"}, timeout=10
        )
        created = httpx.post(
            f"{url}/batches", json=batch, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bearer token" in refused.json()["detail"]
        assert wrong.status_code == 401
        assert created.status_code == 201, created.text
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
    finally:
        api.terminate()
    assert TOKEN not in api.log()
