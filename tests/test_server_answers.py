"""What a server answer must hold to count as a measurement: a stand-in for llama-server's HTTP boundary (the
answers a real engine gives are tested in test_runs_end_to_end); one without timings, or with a zero rate, is
an error (a failed row), never 0 tokens/s marked ok."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.tools.server_process import LlamaServer, ServerError

GOOD = {"prompt_n": 8, "prompt_per_second": 900.0, "predicted_n": 4, "predicted_per_second": 120.0}


def _serve(last_chunk: dict):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in ({"content": "a", "stop": False}, last_chunk):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()  # quick shutdown
    return server


@pytest.mark.parametrize("last, message", [
    ({"content": "", "stop": True}, "sent no timings"),
    ({"content": "", "stop": True, "timings": {**GOOD, "predicted_per_second": 0.0}}, "predicted_per_second"),
    ({"content": "", "stop": True, "timings": {k: v for k, v in GOOD.items() if k != "prompt_per_second"}},
     "prompt_per_second"),
])
def test_an_answer_without_real_timings_is_an_error(last, message, tmp_path):
    http = _serve(last)
    try:
        client = LlamaServer(Path("/nonexistent/llama-server"), tmp_path / "m.gguf", log_path=tmp_path / "s.log",
                             port=http.server_address[1])
        with pytest.raises(ServerError, match=message):
            client.complete([1, 2, 3], 4, timeout_s=10)
    finally:
        http.shutdown()


def test_an_answer_with_timings_is_a_measurement(tmp_path):
    http = _serve({"content": "", "stop": True, "timings": GOOD})
    try:
        client = LlamaServer(Path("/nonexistent/llama-server"), tmp_path / "m.gguf", log_path=tmp_path / "s.log",
                             port=http.server_address[1])
        timings = client.complete([1, 2, 3], 4, timeout_s=10)
    finally:
        http.shutdown()
    assert (timings.prompt_tps, timings.gen_tps, timings.gen_tokens) == (900.0, 120.0, 4)
    assert timings.started_s <= timings.first_token_s <= timings.finished_s
