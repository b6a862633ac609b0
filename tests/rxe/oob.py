"""The out-of-band TCP line between the two lab guests that two-host tests
use to trade QP details and steps (no pyverbs here)."""

from __future__ import annotations

import socket
import time

CONNECT_DEADLINE_S = 120.0  # the peer guest may boot tens of seconds later


def oob_channel(lab, port: int) -> socket.socket:
    """Host 0 accepts, host 1 connects (retrying until host 0 listens); both
    with a deadline."""
    end = time.monotonic() + CONNECT_DEADLINE_S
    if lab.host == 0:
        with socket.create_server((lab.local_addr, port)) as srv:
            srv.settimeout(CONNECT_DEADLINE_S)
            conn, _ = srv.accept()
    else:
        while True:
            try:
                conn = socket.create_connection((lab.peer_addr, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError(f"host 0 never listened on {lab.peer_addr}:{port}") from None
                time.sleep(0.5)
    conn.settimeout(CONNECT_DEADLINE_S)
    return conn
