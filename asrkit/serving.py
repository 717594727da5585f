"""Serving the Voila app to several people at once: a bound on kernels and on each kernel's memory.

Voila starts one kernel per open page and sets no limit of its own. :class:`BoundedKernelManager`, named
by ``VoilaConfiguration.multi_kernel_manager_class`` in ``deploy/multiuser/voila.json``, refuses a kernel
beyond ``max_kernels`` (preheated ones included) with HTTP 503, and at every culling pass shuts down a
kernel whose resident memory has grown past ``kernel_memory_mb``, so that one visitor cannot starve the
others. The memory budget is *checked* every ``cull_interval`` seconds, not a hard limit: a hard limit
needs the operating system (a cgroup per kernel, as JupyterHub's container spawners set; see
docs/scaling.md).

Two more guards serve both the single-user ``voila.json`` and the multi-user one (docs/scaling.md,
"Serving the app to several people"):

* :class:`ClosedPageKernelManager` (the base of :class:`BoundedKernelManager`) shuts down a kernel
  once its page has been closed for ``closed_page_timeout`` seconds, while a page that reconnects
  sooner keeps its kernel.
* :class:`CurrentProtocolWebsocketConnection` (``Voila.kernel_websocket_connection_class``) refuses
  kernel websockets that do not speak Jupyter's current ``v1.kernel.websocket.jupyter.org`` protocol:
  Voila reads every binary message it relays as that protocol, and a message with binary buffers in
  the older framing sends it into a loop that blocks the server and grows without bound.
"""

from __future__ import annotations

import time
from pathlib import Path

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.web import HTTPError
from traitlets import Float, Int

# the kernel websocket protocol of Jupyter Server 2 and JupyterLab 4 (Voila's page among them)
KERNEL_WS_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def resident_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux), or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


class CurrentProtocolWebsocketConnection(ZMQChannelsWebsocketConnection):
    """Jupyter Server's kernel websocket, refused (HTTP 400) to a client that does not offer the current protocol."""

    async def prepare(self) -> None:
        # called before the websocket upgrade, so a refusal is a plain HTTP answer the client can read
        header = self.websocket_handler.request.headers.get("Sec-WebSocket-Protocol", "")
        offered = [protocol.strip() for protocol in header.split(",") if protocol.strip()]
        if KERNEL_WS_PROTOCOL not in offered:
            raise HTTPError(
                400,
                f"kernel websocket protocol {offered or 'legacy (none offered)'} is not served: "
                f"this server speaks only {KERNEL_WS_PROTOCOL}",
            )
        await super().prepare()


class ClosedPageKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager that shuts down a kernel once its page has been closed a while.

    Voila asks for the shutdown when a page unloads, but the request is lost when the browser is killed,
    the tab discarded or the network gone; the idle culler then waits ``cull_idle_timeout`` counted from
    the kernel's last message. Here the clock starts when the kernel's last websocket closes, and a new
    connection (a page reconnecting after a network blip) stops it. Kernels that never had a connection
    (preheated ones, a page still loading) are left to the idle culler.
    """

    closed_page_timeout = Float(
        45.0,
        config=True,
        help="Seconds a kernel may stay without any websocket after its last one closed before it is shut "
        "down at the next culling pass (every cull_interval seconds). 0: never for that reason.",
    )

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # kernel id -> time.monotonic() when its last connection closed
        self._closed_at: dict[str, float] = {}

    def notify_connect(self, kernel_id: str) -> None:
        super().notify_connect(kernel_id)
        self._closed_at.pop(kernel_id, None)

    def notify_disconnect(self, kernel_id: str) -> None:
        super().notify_disconnect(kernel_id)
        if self._kernel_connections.get(kernel_id) == 0:
            self._closed_at[kernel_id] = time.monotonic()

    async def shut_down_closed_pages(self) -> list[str]:
        """Shut down every kernel whose page has been gone past ``closed_page_timeout``; returns their ids."""
        if self.closed_page_timeout <= 0:
            return []
        now, shut = time.monotonic(), []
        for kernel_id, closed_at in list(self._closed_at.items()):
            if kernel_id not in self:
                del self._closed_at[kernel_id]
            elif now - closed_at > self.closed_page_timeout and not self._kernel_connections.get(kernel_id):
                self.log.info("Shutting down kernel %s: its page closed %.0f s ago", kernel_id, now - closed_at)
                del self._closed_at[kernel_id]
                await self.shutdown_kernel(kernel_id, now=True)
                shut.append(kernel_id)
        return shut

    async def cull_kernels(self) -> None:
        # rides on the idle culler's timer (cull_interval), which starts with the first kernel
        await self.shut_down_closed_pages()
        await super().cull_kernels()


class BoundedKernelManager(ClosedPageKernelManager):
    """Jupyter Server's kernel manager with a ceiling on kernels and a memory budget per kernel."""

    max_kernels = Int(
        8,
        config=True,
        help="Kernels running at once, preheated ones included; starting one more is refused with HTTP 503.",
    )
    kernel_memory_mb = Int(
        1024,
        config=True,
        help="Resident memory one kernel may hold, in MB, checked at every culling pass; a kernel above it "
        "is shut down. 0: no budget.",
    )

    async def start_kernel(self, *, kernel_id: str | None = None, path: str | None = None, **kwargs) -> str:
        if (kernel_id is None or kernel_id not in self) and len(self) >= self.max_kernels:
            raise HTTPError(
                503,
                f"the server is full: {len(self)} kernels run, the most BoundedKernelManager.max_kernels allows; "
                "try again when an idle one has been culled",
            )
        return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)

    def kernel_resident_mb(self, kernel_id: str) -> float | None:
        provisioner = getattr(self.get_kernel(kernel_id), "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        return resident_mb(pid) if pid is not None else None

    async def shed_oversized_kernels(self) -> list[str]:
        """Shut down every kernel above the memory budget; returns their ids."""
        if self.kernel_memory_mb <= 0:
            return []
        shed = []
        for kernel_id in self.list_kernel_ids():
            resident = self.kernel_resident_mb(kernel_id)
            if resident is not None and resident > self.kernel_memory_mb:
                self.log.warning(
                    "Shutting down kernel %s: %.0f MB resident, over the %d MB budget per kernel",
                    kernel_id,
                    resident,
                    self.kernel_memory_mb,
                )
                await self.shutdown_kernel(kernel_id, now=True)
                shed.append(kernel_id)
        return shed

    async def cull_kernels(self) -> None:
        await self.shed_oversized_kernels()
        await super().cull_kernels()
