"""The Voila server at the websocket level, no browser: a client speaking Jupyter's older kernel websocket
protocol asks the widgets for their state, as a widget manager does on opening a page.

Voila reads every binary message it relays as the current ``v1.kernel.websocket.jupyter.org`` framing; a
widget state with binary buffers, framed the older way, makes it count ~10**17 offsets in a loop that
blocks the server and grows its memory without bound. The shipped configuration refuses such clients
(asrkit.serving.CurrentProtocolWebsocketConnection); without it the loop still happens, which the last
test checks so that we hear when Voila fixes it. Every server here is watched and killed above a memory
limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from asrkit.serving import KERNEL_WS_PROTOCOL, ClosedPageKernelManager, resident_mb

websocket = pytest.importorskip("websocket", reason="needs websocket-client (installed with jupyter_server)")

ROOT = Path(__file__).resolve().parents[1]
# the app's Voila template, which voila.json names
TEMPLATES = ROOT / "share" / "jupyter"
MULTIUSER = ROOT / "deploy" / "multiuser"
# the widget's binary buffer: large enough that its framing matters, small enough to cost nothing
IMAGE_BYTES = bytes(range(256)) * 256
# growth of the server's resident memory, MB, beyond which it is a runaway: killed, and the test fails
# (a widget state of 64 kB costs the server well under 1 MB to relay)
RUNAWAY_MB = 100
# how long a client waits for the widget state, seconds (the server relays it in milliseconds)
REPLY_TIMEOUT_S = 20
SERVER_START_S = 60


@pytest.fixture(scope="module")
def widget_notebook(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("widgets")
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import ipywidgets\nipywidgets.Image(value=bytes(range(256)) * {len(IMAGE_BYTES) // 256}, format='png')"
        )
    ]
    path = folder / "widgets.ipynb"
    nbformat.write(notebook, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(notebook: Path, *, config_dir: Path):
    """Voila serving ``notebook`` with the config files of ``config_dir``; yields (server, port, token, kernel id)."""
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "voila",
            notebook.name,
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--no-browser",
            f"--token={token}",
            f"--Voila.config_file_paths={config_dir}",
        ],
        cwd=notebook.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_PATH": str(TEMPLATES)},
    )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "Voila did not start"
                time.sleep(0.3)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=SERVER_START_S).read()
        config = re.search(rb'id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
        yield server, port, token, json.loads(config.group(1))["kernelId"]
    finally:
        server.kill()
        server.wait(timeout=30)


def message(msg_type: str, content: dict, *, metadata: dict | None = None) -> dict:
    header = {
        "msg_id": uuid.uuid4().hex,
        "session": "test",
        "username": "test",
        "msg_type": msg_type,
        "version": "5.3",
        "date": "2026-01-01T00:00:00Z",
    }
    return {"header": header, "parent_header": {}, "metadata": metadata or {}, "content": content}


def frame_v1(channel: str, msg: dict) -> bytes:
    parts = [channel.encode()] + [
        json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return b"".join(n.to_bytes(8, "little") for n in [len(offsets), *offsets]) + b"".join(parts)


def unframe(data: bytes | str, *, v1: bool) -> tuple[dict, list[bytes]]:
    """A relayed message as (header and content, binary buffers), in either framing."""
    if isinstance(data, str):
        return json.loads(data), []
    if v1:
        count = int.from_bytes(data[:8], "little")
        offsets = [int.from_bytes(data[8 * i : 8 * i + 8], "little") for i in range(1, count + 1)]
        parts = [data[a:b] for a, b in itertools.pairwise(offsets)]  # channel, header, parent, metadata, content
        return {"header": json.loads(parts[1]), "content": json.loads(parts[4])}, parts[5:]
    count = struct.unpack("!I", data[:4])[0]
    offsets = list(struct.unpack(f"!{count}I", data[4 : 4 * (count + 1)])) + [len(data)]
    parts = [data[a:b] for a, b in itertools.pairwise(offsets)]
    return json.loads(parts[0]), parts[1:]


def ask_for_widget_state(server: subprocess.Popen, port: int, token: str, kernel_id: str, *, v1: bool):
    """Connect, open the widget control comm and request the widgets' state, as a widget manager does.

    Returns ("refused", HTTP status), ("served", the reply's buffers) or ("runaway", MB grown), watching the
    server's resident memory throughout and killing it past ``RUNAWAY_MB`` of growth.
    """
    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4()}&token={token}"
    try:
        ws = websocket.create_connection(url, subprotocols=[KERNEL_WS_PROTOCOL] if v1 else None, timeout=0.25)
    except websocket.WebSocketBadStatusException as refused:
        return "refused", refused.status_code
    baseline = resident_mb(server.pid)
    comm_id = uuid.uuid4().hex
    requests = [
        message("comm_info_request", {"target_name": "jupyter.widget"}),
        message(
            "comm_open",
            {"comm_id": comm_id, "target_name": "jupyter.widget.control", "data": {}},
            metadata={"version": "1.0.0"},
        ),  # ipywidgets' control protocol
        message("comm_msg", {"comm_id": comm_id, "data": {"method": "request_states"}}),
    ]
    try:
        for request in requests:
            if v1:
                ws.send_binary(frame_v1("shell", request))
            else:
                ws.send(json.dumps({**request, "channel": "shell"}))
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            resident = resident_mb(server.pid)
            assert resident is not None, "the server died"
            grown = resident - baseline
            if grown > RUNAWAY_MB:
                server.kill()
                return "runaway", grown
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            if opcode == websocket.ABNF.OPCODE_TEXT:
                data = data.decode()
            msg, buffers = unframe(data, v1=v1)
            if msg["content"].get("data", {}).get("method") == "update_states":
                return "served", buffers
        pytest.fail(f"no widget state within {REPLY_TIMEOUT_S} s; the server grew {grown:.0f} MB")
    finally:
        ws.close()


@pytest.fixture(scope="module")
def shipped_server(widget_notebook):
    with served(widget_notebook, config_dir=ROOT) as server:
        yield server


@pytest.mark.timeout(120)
def test_a_client_of_the_current_protocol_gets_the_widget_state_with_its_buffers(shipped_server):
    outcome, buffers = ask_for_widget_state(*shipped_server, v1=True)
    assert outcome == "served" and buffers == [IMAGE_BYTES]


@pytest.mark.timeout(120)
def test_the_shipped_config_refuses_a_client_of_the_older_protocol(shipped_server):
    assert ask_for_widget_state(*shipped_server, v1=False) == ("refused", 400)
    assert ask_for_widget_state(*shipped_server, v1=True)[0] == "served"  # the server is still answering


def test_both_configs_guard_the_websocket():
    for config_dir in (ROOT, MULTIUSER):
        voila = json.loads((config_dir / "voila.json").read_text())["Voila"]
        assert voila["kernel_websocket_connection_class"] == "asrkit.serving.CurrentProtocolWebsocketConnection"


@pytest.mark.timeout(60)
def test_a_kernel_goes_once_its_page_has_been_closed_a_while_but_not_on_a_quick_reconnect():
    timeout_s = 0.5

    async def scenario():
        config = Config({"ClosedPageKernelManager": {"closed_page_timeout": timeout_s}})
        manager = ClosedPageKernelManager(config=config)
        closed, reconnected, open_page, never_connected = [await manager.start_kernel() for _ in range(4)]
        try:
            for kernel in (closed, reconnected, open_page):
                manager.notify_connect(kernel)
            manager.notify_disconnect(closed)
            manager.notify_disconnect(reconnected)
            await asyncio.sleep(timeout_s / 2)
            manager.notify_connect(reconnected)  # back within the timeout: its clock stops
            assert await manager.shut_down_closed_pages() == []
            await asyncio.sleep(timeout_s)
            assert await manager.shut_down_closed_pages() == [closed]
            assert sorted(manager.list_kernel_ids()) == sorted([reconnected, open_page, never_connected])
            manager.notify_disconnect(reconnected)  # closed for good this time
            await asyncio.sleep(timeout_s * 1.5)
            assert await manager.shut_down_closed_pages() == [reconnected]
        finally:
            await manager.shutdown_all(now=True)

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_voila_unguarded_still_runs_away_on_the_older_protocol(widget_notebook, tmp_path):
    # when this fails, Voila relays the older protocol safely and the guard can go (docs/scaling.md)
    with served(widget_notebook, config_dir=tmp_path) as server:
        outcome, _ = ask_for_widget_state(*server, v1=False)
    assert outcome == "runaway", f"the older protocol was {outcome}: drop the guard?"
