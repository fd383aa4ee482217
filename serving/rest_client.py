"""Client for TF Serving's REST API (works against TF Serving, the dev server and the sidecar).

Standard library only, so it runs anywhere. Errors come back as `ServingError` carrying the HTTP
status and TF Serving's `{"error": ...}` message.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


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

    def _model_path(self, version: int | None) -> str:
        path = f"{self.base_url}/v1/models/{self.model_name}"
        return path if version is None else f"{path}/versions/{version}"

    def _call(self, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[dict, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")
            raise ServingError(err.code, message) from None

    def status(self, version: int | None = None) -> dict:
        return self._call(self._model_path(version))[0]

    def metadata(self, version: int | None = None) -> dict:
        return self._call(self._model_path(version) + "/metadata")[0]

    def predict_rows(self, rows: list[dict[str, Any]], version: int | None = None, request_id: str | None = None) -> list:
        """Row ("instances") format; returns the "predictions" list."""
        headers = {"X-Request-Id": request_id} if request_id else None
        return self._call(self._model_path(version) + ":predict", {"instances": rows}, headers)[0]["predictions"]

    def predict_columns(self, columns: dict[str, list], version: int | None = None) -> Any:
        """Columnar ("inputs") format; returns the "outputs" value."""
        return self._call(self._model_path(version) + ":predict", {"inputs": columns})[0]["outputs"]

    def available_versions(self) -> list[int]:
        return sorted(int(v["version"]) for v in self.status()["model_version_status"] if v["state"] == "AVAILABLE")
