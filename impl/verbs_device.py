"""The verbs provider's device: one rxe device context, its port's GID and
one protection domain, opened at the first WSPStartupEx (START-02) and kept
until shutdown. Every MR, window and QP of the provider lives in this PD.
"""

from __future__ import annotations

from typing import Any

PORT = 1


class Device:
    """An open device context and its PD. ``open`` answers None when the
    SAN is not ready (no such device, port not ACTIVE, no GID, too few
    SGEs); ``close`` releases the PD, then the context, and may be called
    again."""

    def __init__(self, ctx: Any, pd: Any, name: str, gid: str, gid_index: int, stats: dict) -> None:
        self.ctx, self.pd, self.name, self.gid, self.gid_index = ctx, pd, name, gid, gid_index
        #: The provider's count of verbs calls (``reg_mr``, ``dereg_mr``).
        self.stats = stats

    @classmethod
    def open(cls, name: str | None, gid_index: int, max_sge: int, stats: dict) -> "Device | None":
        """START-02: the SAN is ready when the device opens and its port is
        ACTIVE with a GID at ``gid_index``, and it offers ``max_sge`` SGEs."""
        import pyverbs.enums as e
        from pyverbs.device import Context, get_device_list
        from pyverbs.pd import PD

        try:
            names = [d.name.decode() for d in get_device_list()]
        except Exception:  # noqa: BLE001  libibverbs raises on a kernel without IB
            names = []
        name = name or next((n for n in names if n.startswith("rxe")), None)
        if name is None or name not in names:
            return None
        ctx = Context(name=name)
        try:
            if ctx.query_port(PORT).state != e.IBV_PORT_ACTIVE:
                raise OSError("port not active")
            gid = ctx.query_gid(PORT, gid_index).gid
            if gid.strip("0:") == "":
                raise OSError("no GID")
            if ctx.query_device().max_sge < max_sge:
                raise OSError("device has fewer SGEs than the provider promises (RDMA-03)")
            pd = PD(ctx)
        except Exception:  # noqa: BLE001  any of these means "not ready"
            ctx.close()
            return None
        return cls(ctx, pd, name, gid, gid_index, stats)

    def reg_mr(self, addr: int, length: int, access: int) -> Any:
        """``ibv_reg_mr`` of the application's own pages."""
        from pyverbs.mr import MR

        mr = MR(self.pd, length, access, address=addr)
        self.stats["reg_mr"] += 1
        return mr

    def dereg_mr(self, mr: Any) -> None:
        mr.close()
        self.stats["dereg_mr"] += 1

    def alloc_mw(self) -> Any:
        """A type-2 memory window in the PD, not yet bound."""
        import pyverbs.enums as e
        from pyverbs.mr import MW

        return MW(self.pd, e.IBV_MW_TYPE_2)

    def close(self) -> None:
        """The PD, then the context (EBUSY from either means something made
        under them leaked: the caller records it)."""
        pd, self.pd = self.pd, None
        ctx, self.ctx = self.ctx, None
        try:
            if pd is not None:
                pd.close()
        finally:
            if ctx is not None:
                ctx.close()
