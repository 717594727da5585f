"""The multi-user Voila configuration: what Voila reads from it, its bounds, and the kernel manager
that enforces them."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import pytest
from tornado.web import HTTPError
from traitlets.config import Config

from asrkit.serving import BoundedKernelManager

ROOT = Path(__file__).resolve().parents[1]
MULTIUSER = ROOT / "deploy" / "multiuser"
# the reference host of docs/scaling.md, and the measured resident memory of an app kernel with the default
# model (Whisper tiny.en on TensorFlow: 1444 MB by benchmarks/bench_app.py)
HOST_MB, TF_KERNEL_MB = 16 * 1024, 1444


# the preheated pool's start-up coroutines are cancelled unstarted: nothing of this test runs a notebook
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_voila_reads_the_multiuser_config_into_a_bounded_preheating_kernel_manager():
    from voila.app import Voila

    app = Voila()
    app.initialize([str(ROOT / "notebooks/app.ipynb"), "--no-browser", "--Voila.config_file_paths", str(MULTIUSER)])
    app.init_settings()  # builds the kernel manager, scheduling (not yet starting) the preheated pool
    manager = app.kernel_manager
    try:
        assert isinstance(manager, BoundedKernelManager)
        assert app.voila_configuration.preheat_kernel and not app.voila_configuration.progressive_rendering
        pool = manager.kernel_pools_config["default"]["pool_size"]
        # the pool leaves most kernels to visitors; every kernel at its budget fits the reference host
        assert 1 <= pool <= manager.max_kernels // 2
        assert (
            TF_KERNEL_MB < manager.kernel_memory_mb and manager.max_kernels * manager.kernel_memory_mb <= 0.8 * HOST_MB
        )
        assert 60 <= manager.cull_idle_timeout <= 3600 and manager.cull_interval <= manager.cull_idle_timeout / 10
        assert manager.cull_connected  # an idle page left open must not hold a kernel for ever
        assert app.identity_provider.token  # generated, though the command line gave no --token
    finally:
        loop = asyncio.get_event_loop()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        del pending, manager, app
        gc.collect()  # the never-awaited warnings now, under this test's filter


def test_the_multiuser_config_keeps_the_single_user_settings_and_jupyters_protections():
    single = json.loads((ROOT / "voila.json").read_text())
    multi = json.loads((MULTIUSER / "voila.json").read_text())
    # every single-user setting (the upload limit) holds here too, so the two cannot drift apart
    assert {k: multi["Voila"][k] for k in single["Voila"]} == single["Voila"]
    assert multi["Voila"]["auto_token"]  # a token even when the command line forgets --token

    def settings(tree, prefix=""):
        for key, value in tree.items():
            yield from settings(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)]

    flat = dict(settings(multi))
    assert not any(k.endswith((".token", ".password", ".disable_check_xsrf", ".allow_origin", ".ip")) for k in flat)


def test_kernels_beyond_the_bound_are_refused_and_a_kernel_over_its_memory_budget_is_shut_down():
    async def scenario():
        manager = BoundedKernelManager(
            config=Config({"BoundedKernelManager": {"max_kernels": 1, "kernel_memory_mb": 1}})
        )
        kernel = await manager.start_kernel()
        try:
            with pytest.raises(HTTPError) as refused:
                await manager.start_kernel()
            assert refused.value.status_code == 503 and "max_kernels" in refused.value.log_message
            assert manager.kernel_resident_mb(kernel) > 1  # a Python process holds more than 1 MB
            assert await manager.shed_oversized_kernels() == [kernel]
            assert manager.list_kernel_ids() == []
        finally:
            await manager.shutdown_all(now=True)

    asyncio.run(scenario())
