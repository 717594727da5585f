"""Fault injection for the Ray tests: Ray runs ``install`` in every worker process it starts.

While a file exists at the path ``FAULT_ENV`` names, the first worker to delete it kills its own process
as it starts a shard, as a machine lost mid-run would.
"""

import os

FAULT_ENV = "ASRKIT_TEST_FAULT_FILE"


def install() -> None:
    from asrkit import distributed

    run = distributed.ShardWorker.run

    def run_or_die(self, items):
        try:
            os.unlink(os.environ[FAULT_ENV])  # only one process can delete it: exactly one worker dies
        except FileNotFoundError:
            return run(self, items)
        os._exit(1)

    distributed.ShardWorker.run = run_or_die
