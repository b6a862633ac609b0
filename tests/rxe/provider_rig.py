"""Helpers for the verbs provider's rxe tests: two providers in lockstep with
the model (sanspi.conform.world.World), the model's Config built from the
provider's own capabilities, and rdma-tool resource counts.

Imported through fixtures only (the host leg has no pyverbs).
"""

from __future__ import annotations

import subprocess

from sanspi.conform.world import Ref, World
from sanspi.impl.interface import Capabilities
from sanspi.impl.verbs import VerbsProvider
from sanspi.model.constants import MEM_READWRITE, OK
from sanspi.model.state import Config

PAGE = 4096


def config_of(caps: Capabilities, **world: object) -> Config:
    """The model's Config describing a provider with ``caps`` (README, bounds)."""
    return Config(slots=caps.slots, max_sge=caps.max_sge, has_rdma_read=caps.has_rdma_read,
                  has_cache=caps.has_cache, descriptor_size=caps.descriptor_size,
                  max_startups=caps.max_startups, **world)


def res_count(kind: str) -> int:
    """How many objects of ``kind`` (mr, qp, pd, cq) the kernel's RDMA
    resource tracker lists, every process and device included."""
    out = subprocess.run(["rdma", "res", "show", kind], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def make_world(pages: int = 4, sockets: int = 2, **caps: object) -> World:
    """Two started providers (host 0, host 1), ``pages`` mapped on each and
    every connection up, all through the World, so the model has seen the
    same steps."""
    providers = (VerbsProvider(**caps), VerbsProvider(**caps))
    world = World(providers, config_of(providers[0].capabilities, sockets=sockets))
    for h in (0, 1):
        assert world.step("startup_ex", host=h, major=2, minor=2).status == OK
        world.step("alloc", host=h, page=0, npages=pages)
    for conn in range(sockets):
        world.step("connect", conn=conn)
    return world


def issued(rid: int) -> Ref:
    return Ref("issued", rid)


def reg(world: World, host: int = 0, sock: int = 0, addr: int = 0, length: int = PAGE,
        flags: int = MEM_READWRITE) -> int:
    step = world.step("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)
    assert step.status == OK, (step.status, world.providers[host].errors)
    return step.result


def rreg(world: World, host: int = 1, sock: int = 0, addr: int = 0, length: int = PAGE,
         flags: int = MEM_READWRITE) -> int:
    step = world.step("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                      desc_len=32)
    assert step.status == OK, (step.status, world.providers[host].errors)
    return step.result


def shutdown(world: World) -> list[str]:
    """Shut both providers down (twice: it must be idempotent); what they
    recorded as unexpected exceptions."""
    errors = []
    for p in world.providers:
        p.shutdown()
        p.shutdown()
        errors += p.errors
    return errors
