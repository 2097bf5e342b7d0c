"""The jupyter_client kernel provisioner (an entry point in ``pyproject.toml``): the local
provisioner, but the kernel is forked from a warm template when it can be."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from mlops_helpers.workbook.warmstart.caller import fork, streams
from mlops_helpers.workbook.warmstart.common import (
    KERNEL_MODULE,
    WarmStartUnavailable,
    enabled,
)


class WarmProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, but the kernel is forked from a warm template."""

    warm = False

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        """Fork the kernel from its template; start it the usual way when that fails."""
        kernel = enabled() and tuple(cmd[1:3]) == ("-m", KERNEL_MODULE)
        fds = streams(kwargs) if kernel else None
        if fds is not None:
            env = dict(kwargs.get("env") or os.environ)
            cwd = str(kwargs.get("cwd") or os.getcwd())
            loop = asyncio.get_running_loop()
            try:
                process = await loop.run_in_executor(None, fork, cmd, env, cwd, fds)
            except WarmStartUnavailable as exc:
                self.log.warning(
                    "warm kernel start unavailable (%s); starting it the usual way", exc
                )
            else:
                self.process = process
                self.pid = self.pgid = process.pid
                self.cwd = cwd
                self.warm = True
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)
