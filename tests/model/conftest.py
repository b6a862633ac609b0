"""A model with both providers started, two connections up and memory mapped."""

from __future__ import annotations

import pytest

from sanspi.model.constants import MEM_READ, MEM_READWRITE, MEM_WRITE, OK
from sanspi.model.machine import Model
from sanspi.model.state import Config

PAGE = 4096


def ready_model(cfg: Config | None = None, pages: int = 4) -> Model:
    m = Model(cfg or Config())
    for h in (0, 1):
        assert m.call("startup_ex", host=h, major=2, minor=2).status == OK
        m.call("alloc", host=h, page=0, npages=pages)
    for conn in range(m.cfg.sockets):
        m.call("connect", conn=conn)
    return m


def reg(m: Model, host: int = 0, sock: int = 0, addr: int = 0, length: int = PAGE, flags: int = MEM_READWRITE) -> int:
    step = m.call("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)
    assert step.status == OK, step.status
    return step.result


def rreg(m: Model, host: int = 1, sock: int = 0, addr: int = 0, length: int = PAGE, flags: int = MEM_READWRITE) -> int:
    step = m.call("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                  desc_len=m.cfg.descriptor_size)
    assert step.status == OK, step.status
    return step.result


@pytest.fixture
def m() -> Model:
    return ready_model()


__all__ = ["MEM_READ", "MEM_WRITE", "MEM_READWRITE", "PAGE", "ready_model", "reg", "rreg"]
