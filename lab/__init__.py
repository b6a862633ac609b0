"""The rxe lab: where sanspi's verbs tests meet a real (soft) RDMA device.

These machines' kernel has no InfiniBand, so rxe runs in QEMU guests booted
from Debian's stock kernel by virtme-ng, with the host's files as the
guests' root (facts in lab/RXE-FACTS.md). One job per module:

- ``provision``: ``sanspi lab setup``: Debian packages, kernel, stamp.
- ``topology``: the guest scripts and ``vng`` command lines (pure).
- ``launch``: boot, relay output, enforce the boot and run deadlines.
- ``peer``: rdma-core's own pyverbs tests, run in the lab and summarized.
- ``cli``: the ``sanspi lab`` subcommands over the above.
"""
