"""A fault-injecting HTTP proxy on 127.0.0.1 in front of moto's server.

boto3 talks real HTTP to the proxy (settings endpoint_url); the proxy forwards each request
to moto unchanged, or answers it with the error a throttled or failing AWS API answers
(status and XML body as EC2, IAM and S3 send them), so botocore's retry logic, the
provider's and the rollback meet the faults exactly as they would on the wire.

    proxy = FaultProxy(moto.url, seed=1)
    proxy.throttle(0.5)                              # half of all calls throttled
    proxy.throttle_attempts(3)                       # every call's first 3 attempts
    proxy.fail("ec2.RunInstances", 90, 400, "InvalidParameterValue")
    proxy.on("ec2.TerminateInstances", 1, fn)        # fn() at the first such call
    ...
    proxy.stop()

Operations are named "service.Action" ("ec2.RunInstances", "iam.CreateRole"); S3's, read off
the REST request, are named like the API ("s3.CreateBucket", "s3.PutObject", ...).
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

THROTTLE = {"ec2": (503, "RequestLimitExceeded"), "iam": (400, "Throttling"),
            "s3": (503, "SlowDown"), "sts": (400, "Throttling")}


@dataclass
class _Rule:
    op: str
    k: int | None                       # the k-th call (1-based); None: every call
    status: int = 0
    code: str = ""
    fn: Callable[[], None] | None = None


def error_body(service: str, code: str, message: str = "injected by the test proxy") -> bytes:
    """The XML an AWS API answers an error with."""
    if service == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                f"</Error></Errors><RequestID>proxy</RequestID></Response>")
    elif service == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>"
                f"{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'.encode()


def s3_operation(method: str, path: str, query: dict[str, list[str]]) -> str:
    """The S3 API name of a path-style REST request."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "ListBuckets"
    if len(parts) == 1:
        for q, name in (("publicAccessBlock", "PublicAccessBlock"), ("encryption",
                        "BucketEncryption"), ("tagging", "BucketTagging")):
            if q in query:
                return {"PUT": "Put", "GET": "Get", "DELETE": "Delete"}.get(method, "") + name
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket",
                "GET": "ListObjectsV2" if "list-type" in query else "ListObjects"}.get(
                    method, method)
    return {"PUT": "PutObject", "GET": "GetObject", "DELETE": "DeleteObject",
            "HEAD": "HeadObject"}.get(method, method)


class FaultProxy:
    """The proxy (a ThreadingHTTPServer in a thread) and its fault switches."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        self.upstream = urlparse(upstream)
        self.rules: list[_Rule] = []
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.rate = 0.0
        self.latency = 0.0                  # seconds added to every answer (a far region)
        self.first_attempts = 0
        self.throttled_services: tuple[str, ...] = ()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"          # keep-alive, as botocore expects

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._local = threading.local()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # --- switches ------------------------------------------------------------------
    def throttle(self, rate: float, services: tuple[str, ...] = ("ec2", "iam", "s3")) -> None:
        """Answer this share of the services' calls as throttled (0 turns it off)."""
        with self.lock:
            self.rate, self.throttled_services = rate, services

    def throttle_attempts(self, n: int,
                          services: tuple[str, ...] = ("ec2", "iam", "s3")) -> None:
        """Answer the first ``n`` attempts of every call as throttled (botocore numbers its
        attempts in the amz-sdk-request header): each call then succeeds after exactly n
        retries, the same for every run."""
        with self.lock:
            self.first_attempts, self.throttled_services = n, services

    def fail(self, op: str, k: int | None, status: int, code: str) -> None:
        """Answer the k-th call of ``op`` (every call when k is None) with an error."""
        self.rules.append(_Rule(op, k, status, code))

    def on(self, op: str, k: int, fn: Callable[[], None]) -> None:
        """Call fn() when the k-th call of ``op`` arrives (then forward it)."""
        self.rules.append(_Rule(op, k, fn=fn))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the proxy -----------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = self._read_body(req)
        if self.latency:
            time.sleep(self.latency)
        url = urlparse(req.path)
        query = parse_qs(url.query, keep_blank_values=True)
        auth = req.headers.get("Authorization", "")
        m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
        service = m.group(1) if m else "?"
        if service == "s3":
            op = f"s3.{s3_operation(req.command, url.path, query)}"
        else:
            form = parse_qs(body.decode("utf-8", "replace")) if body else {}
            op = f"{service}.{(form.get('Action') or query.get('Action') or ['?'])[0]}"
        with self.lock:
            self.calls[op] += 1
            n = self.calls[op]
            m = re.search(r"attempt=(\d+)", req.headers.get("amz-sdk-request", ""))
            attempt = int(m.group(1)) if m else 1
            throttled = service in self.throttled_services and (
                attempt <= self.first_attempts or self.rng.random() < self.rate)
        for rule in self.rules:
            if rule.op == op and (rule.k is None or rule.k == n):
                if rule.fn is not None:
                    rule.fn()
                else:
                    self._error(req, service, op, rule.status, rule.code)
                    return
        if throttled:
            status, code = THROTTLE.get(service, (503, "ServiceUnavailable"))
            self._error(req, service, op, status, code)
            return
        self._forward(req, body)

    def _read_body(self, req: BaseHTTPRequestHandler) -> bytes:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(req.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while req.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += req.rfile.read(size)
                req.rfile.readline()
        n = int(req.headers.get("Content-Length") or 0)
        return req.rfile.read(n) if n else b""

    def _error(self, req: BaseHTTPRequestHandler, service: str, op: str, status: int,
               code: str) -> None:
        with self.lock:
            self.injected[op] += 1
        data = error_body(service, code) if req.command != "HEAD" else b""
        req.send_response(status)
        req.send_header("Content-Type", "text/xml")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1",
                                              self.upstream.port, timeout=60)
            self._local.conn = conn
        return conn

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in req.headers.items()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length")}
        if body or req.command in ("POST", "PUT"):
            headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(req.command, req.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        req.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                 "server", "date"):
                req.send_header(k, v)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)
