"""A real HTTP file server on 127.0.0.1 for the fetcher tests: Range requests, 404s, cut-off responses.

It also answers like the Hugging Face hub's ``/<repo>/resolve/<revision>/<file>`` route (ETag and
X-Repo-Commit headers on HEAD and GET), so huggingface_hub can download from it through ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"^bytes=(\d+)-$")
_HF_RESOLVE = re.compile(r"^/[^/]+/[^/]+/resolve/([0-9a-f]{40})/")


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    # path -> byte count: the next GET of that path sends the full Content-Length but only this many
    # bytes of body, then drops the connection (one cut per entry; the entry is removed when used).
    cuts: dict[str, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def start(self) -> FileServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.append(Request(self.command, path, self.headers.get("Range")))
            data = server.files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            match = _RANGE.match(self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            hf = _HF_RESOLVE.match(path)
            if hf:
                self.send_header("X-Repo-Commit", hf.group(1))
            self.end_headers()
            if not body:
                return
            payload = data[start:]
            cut = server.cuts.pop(path, None) if self.command == "GET" else None
            if cut is not None:
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler
