"""Client for TF Serving's REST API (works against TF Serving, the dev server and the sidecar).

Built on the shared client (flywheel/http_client.py), so it runs anywhere. Errors come back as
`ServingError` carrying the HTTP status and TF Serving's `{"error": ...}` message.
"""
from __future__ import annotations

import json
from typing import Any

from flywheel import http_client, serving_protocol


class ServingError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class RestClient:
    def __init__(self, base_url: str, model_name: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.timeout_s = timeout_s

    def _call(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[dict, dict]:
        data = None if body is None else json.dumps(body).encode()
        answer = http_client.request(self.base_url + path, data, timeout_s=self.timeout_s,
                                     headers={"Content-Type": http_client.JSON, **(headers or {})})
        if not answer.ok:
            raise ServingError(answer.status, serving_protocol.error_message(answer.body))
        return answer.json(), answer.headers

    def status(self, version: int | None = None) -> dict:
        return self._call(serving_protocol.model_path(self.model_name, version))[0]

    def metadata(self, version: int | None = None) -> dict:
        return self._call(serving_protocol.metadata_path(self.model_name, version))[0]

    def predict_rows(self, rows: list[dict[str, Any]], version: int | None = None, request_id: str | None = None) -> list:
        """Row ("instances") format; returns the "predictions" list."""
        headers = {"X-Request-Id": request_id} if request_id else None
        path = serving_protocol.predict_path(self.model_name, version)
        return self._call(path, {"instances": rows}, headers)[0]["predictions"]

    def predict_columns(self, columns: dict[str, list], version: int | None = None) -> Any:
        """Columnar ("inputs") format; returns the "outputs" value."""
        return self._call(serving_protocol.predict_path(self.model_name, version), {"inputs": columns})[0]["outputs"]

    def available_versions(self) -> list[int]:
        return sorted(int(v["version"]) for v in self.status()["model_version_status"] if v["state"] == "AVAILABLE")
