"""Pictures of pages with Debian's headless Chromium, kept under artifacts/ for people to look
at (the stack's alerts page, the drill matrix)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.support.binaries import require_binary


def screenshot(url: str, path: Path, *, size: str = "1400,1100") -> None:
    """Headless Chromium's picture of ``url`` (an http:// or file:// address)."""
    chromium = require_binary("chromium")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--window-size={size}",
             "--virtual-time-budget=10000", f"--screenshot={path}", url],
            capture_output=True, timeout=90, check=True)
