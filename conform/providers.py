"""Which providers a campaign can run: ``sim``, ``rxe`` (the verbs provider),
or ``MODULE:FACTORY`` naming any callable that returns a pair of providers
(host 0, host 1) joined to each other."""

from __future__ import annotations

import importlib

import attrs
from typing import TYPE_CHECKING

from sanspi.impl.interface import Capabilities, Provider, ProviderFactory
from sanspi.model.state import Config

if TYPE_CHECKING:
    from sanspi.conform.agent import AgentLink


#: The software provider as campaigns run it: the default capabilities (the
#: directed rule ``fill_the_table`` reaches a full table of any size, REG-09).
SIM_CAPABILITIES = Capabilities()


class ProviderError(Exception):
    """The provider named cannot be made: one line for the user."""


def load_factory(spec: str, pages: int, page_size: int = 4096) -> ProviderFactory:
    if spec == "sim":
        from sanspi.impl.sim import sim_pair

        return lambda: sim_pair(SIM_CAPABILITIES, pages, page_size)
    if spec == "rxe":
        try:
            from sanspi.impl.verbs import VerbsProvider
        except ImportError as exc:
            raise ProviderError(f"the verbs provider cannot be loaded here ({exc})") from None
        if page_size != 4096:
            raise ProviderError("the verbs provider maps real 4096-byte pages")
        # both hosts on this machine's one rxe device (loopback topology)
        return lambda: (VerbsProvider(pages=pages), VerbsProvider(pages=pages))
    if spec.startswith("mutant:"):
        from sanspi.conform.mutants import BY_NAME

        name = spec.split(":", 1)[1]
        if name not in BY_NAME:
            raise ProviderError(f"no mutant named {name!r}")
        return lambda: BY_NAME[name].pair(SIM_CAPABILITIES, pages, page_size)
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ProviderError(f"provider {spec!r} is not sim, rxe or MODULE:FACTORY")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ProviderError(f"cannot load {spec}: {exc}") from None
    if not callable(factory):
        raise ProviderError(f"{spec} is not callable")
    return factory


def rxe_two_host(pages: int, link: "AgentLink") -> ProviderFactory:
    """Host 0's verbs provider here, host 1's in the other lab guest behind
    its agent (conform/agent.py); ``link`` is the connection to that agent."""
    from sanspi.conform.agent import RemoteProvider

    try:
        from sanspi.impl.verbs import VerbsProvider
    except ImportError as exc:
        raise ProviderError(f"the verbs provider cannot be loaded here ({exc})") from None
    return lambda: (VerbsProvider(pages=pages), RemoteProvider(link, pages))


_HOST1_HANDLES: list[bool] = []  # set once the verbs module counts host 1's handles


def rxe_host1(pages: int) -> Provider:
    """Host 1's verbs provider, as the agent in the second guest makes it.

    Its handles are numbered from 2**32: in the loopback run one counter
    serves both hosts, so a handle the World passes to the other host is
    never one of that host's by accident; two processes would both count
    from 1, and the "foreign handle" cases would quietly become own ones.
    """
    import itertools

    from sanspi.impl import verbs

    if not _HOST1_HANDLES:
        verbs._HANDLES = itertools.count(2**32)
        _HOST1_HANDLES.append(True)
    return verbs.VerbsProvider(pages=pages)


@attrs.frozen
class Probed:
    """What one pair of a factory says about itself."""

    capabilities: Capabilities
    name: str
    pages: int  # pages in the smaller of the two hosts' address spaces
    page_size: int


def probe(factory: ProviderFactory) -> Probed:
    """Make one pair to read the capabilities, name and address space, then
    release it. Whatever is missing or of the wrong kind is one line."""
    try:
        pair = factory()
    except Exception as exc:  # noqa: BLE001  a provider that cannot start is reported in one line
        raise ProviderError(f"the provider factory failed: {type(exc).__name__}: {exc}") from None
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise ProviderError("the provider factory must return a pair (host 0, host 1), "
                            f"not {type(pair).__name__}")
    try:
        for h, p in enumerate(pair):
            for attr in ("name", "capabilities", "memory"):
                if not hasattr(p, attr):
                    raise ProviderError(f"host {h}'s provider has no `{attr}` (impl/interface.py, Provider)")
            if not isinstance(p.capabilities, Capabilities):
                raise ProviderError(f"host {h}'s provider.capabilities is a {type(p.capabilities).__name__}, "
                                    f"not a sanspi.impl.interface.Capabilities")
            for attr in ("base", "pages", "page_size"):
                if not isinstance(getattr(p.memory, attr, None), int):
                    raise ProviderError(f"host {h}'s provider.memory.{attr} is not an int (impl/interface.py, "
                                        f"AddressSpace)")
        if pair[0].memory.page_size != pair[1].memory.page_size:
            raise ProviderError("the two hosts' address spaces have different page sizes")
        return Probed(pair[0].capabilities, pair[0].name, min(p.memory.pages for p in pair),
                      pair[0].memory.page_size)
    finally:
        for p in pair:
            try:
                p.shutdown()
            except Exception:  # noqa: BLE001  a broken shutdown is found by the campaign, not here
                pass


def campaign_pages(probed: Probed, asked: int | None) -> int:
    """The model's pages for a campaign: ``asked`` (--pages), or the
    provider's own address space when not asked; never more than it has."""
    if asked is None:
        return min(probed.pages, 64)
    if asked > probed.pages:
        raise ProviderError(f"--pages {asked}: {probed.name}'s address space has only {probed.pages} pages")
    return asked


def open_provider(spec: str, pages: int | None,
                  link: "AgentLink | None" = None) -> tuple[ProviderFactory, Probed, Config]:
    """The factory ``spec`` names (with ``link``: rxe across two guests),
    what one pair says about itself, and the model's configuration for a
    campaign on it with ``pages`` (--pages; None: the provider's own).
    Raises ProviderError (one line)."""
    from sanspi.conform.campaign import model_config

    built = pages or Config().pages  # what sim and rxe are built with
    factory = load_factory(spec, built) if link is None else rxe_two_host(built, link)
    probed = probe(factory)
    return factory, probed, model_config(probed.capabilities, pages=campaign_pages(probed, pages))
