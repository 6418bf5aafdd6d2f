"""A container image from the host's static busybox, for machines that cannot pull images.

Debian's ``busybox-static`` is one self-contained binary; a root filesystem of that binary and
a few applet links, imported with the Docker SDK (``docker import``), is a working image with
no registry involved. The demo's recorder container and the Docker tests run it.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
# Applets used by the demo and the tests; each is a link to busybox, which dispatches on
# argv[0]. "[" and "test" are what a shell loop's condition runs.
APPLETS = ("sh", "sleep", "true", "false", "[", "test", "touch", "rm")


def busybox_rootfs(busybox: Path = BUSYBOX) -> bytes:
    """A tar of a root filesystem holding only a static busybox and its applet links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("bin")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        binary = tarfile.TarInfo("bin/busybox")
        binary.size = busybox.stat().st_size
        binary.mode = 0o755
        with busybox.open("rb") as source:
            tar.addfile(binary, source)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()
