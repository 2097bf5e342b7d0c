"""The jupyter_client kernel provisioner (an entry point in ``pyproject.toml``): the local
provisioner, but the kernel is forked from a warm template when it can be, and it talks to
its client over Unix sockets in a folder of its own instead of loopback TCP ports.

Why not TCP: jupyter_client picks a kernel's five ports by binding port 0 and closing the
sockets, then the kernel binds those numbers up to a second later. In between, any process
of any local user can take one: a client connection's ephemeral port (notebook 12 opens
thousands), another process's "free port". Then the kernel's heartbeat thread dies with
"Address already in use" (seen in a headless run: its traceback landed in notebook 08's
output), or its shell fails to bind and the notebook fails; and a port another user binds
first receives the client's messages. ``ipc`` sockets in a fresh ``mkdtemp`` folder (mode
0700, so only this user can reach them) cannot collide and cannot be squatted. The
learner's JupyterLab keeps jupyter_client's usual TCP (it never uses this provisioner).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from mlops_helpers.workbook.warmstart.caller import fork, streams
from mlops_helpers.workbook.warmstart.common import (
    KERNEL_MODULE,
    WarmStartUnavailable,
    enabled,
)

SOCKET_FOLDER_PREFIX = "mlops-kernel-"
# a Unix socket's path must fit in sun_path (108 bytes on Linux, with its NUL)
MAX_SOCKET_PATH = 100
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")


class WarmProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, but the kernel is forked from a warm template."""

    warm = False

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Give a new kernel Unix sockets in a private folder (see the module), then do
        what the local provisioner does."""
        km = self.parent
        fresh = km is not None and not any(getattr(km, name) for name in PORT_NAMES)
        if fresh and km.transport == "tcp" and os.name == "posix" and not km.connection_file:
            folder = Path(tempfile.mkdtemp(prefix=SOCKET_FOLDER_PREFIX))  # 0700, new
            if len(str(folder / "k-99999")) <= MAX_SOCKET_PATH:
                km.transport = "ipc"
                km.ip = str(folder / "k")  # the sockets are k-1 to k-5
                km.connection_file = str(folder / "kernel.json")
                km.cache_ports = False
            else:
                folder.rmdir()
        return await super().pre_launch(**kwargs)

    async def cleanup(self, restart: bool = False) -> None:
        """Also remove the sockets' folder when the kernel is gone for good (jupyter_client
        has removed the sockets and the connection file in it by then)."""
        await super().cleanup(restart=restart)
        km = self.parent
        if restart or km is None or km.transport != "ipc":
            return
        folder = Path(km.ip).parent
        if folder.name.startswith(SOCKET_FOLDER_PREFIX) and folder.parent == Path(
            tempfile.gettempdir()
        ):
            with contextlib.suppress(OSError):  # not empty: something else is in it
                folder.rmdir()

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
