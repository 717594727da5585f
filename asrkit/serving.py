"""Serving the Voila app to several people at once: a bound on kernels and on each kernel's memory.

Voila starts one kernel per open page and sets no limit of its own. :class:`BoundedKernelManager`, named
by ``VoilaConfiguration.multi_kernel_manager_class`` in ``deploy/multiuser/voila.json``, refuses a kernel
beyond ``max_kernels`` (preheated ones included) with HTTP 503, and at every culling pass shuts down a
kernel whose resident memory has grown past ``kernel_memory_mb``, so that one visitor cannot starve the
others. The memory budget is *checked* every ``cull_interval`` seconds, not a hard limit: a hard limit
needs the operating system (a cgroup per kernel, as JupyterHub's container spawners set; see
docs/scaling.md).
"""

from __future__ import annotations

from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.web import HTTPError
from traitlets import Int


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


class BoundedKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager with a ceiling on kernels and a memory budget per kernel."""

    max_kernels = Int(
        8, config=True,
        help="Kernels running at once, preheated ones included; starting one more is refused with HTTP 503.",
    )
    kernel_memory_mb = Int(
        1024, config=True,
        help="Resident memory one kernel may hold, in MB, checked at every culling pass; a kernel above it "
             "is shut down. 0: no budget.",
    )

    async def start_kernel(self, *, kernel_id: str | None = None, path: str | None = None, **kwargs) -> str:
        if (kernel_id is None or kernel_id not in self) and len(self) >= self.max_kernels:
            raise HTTPError(
                503, f"the server is full: {len(self)} kernels run, the most BoundedKernelManager.max_kernels allows; "
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
                self.log.warning("Shutting down kernel %s: %.0f MB resident, over the %d MB budget per kernel",
                                 kernel_id, resident, self.kernel_memory_mb)
                await self.shutdown_kernel(kernel_id, now=True)
                shed.append(kernel_id)
        return shed

    async def cull_kernels(self) -> None:
        # the memory check rides on the idle culler's timer (cull_interval), which starts with the first kernel
        await self.shed_oversized_kernels()
        await super().cull_kernels()
