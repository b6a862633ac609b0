"""Constants of the model, and the SPI's numbers it uses (re-exported from
``sanspi.spi`` so model code has one place to import from)."""

from __future__ import annotations

from sanspi.spi import *  # noqa: F401,F403

# --- Registration kinds ------------------------------------------------------
KIND_NONE = 0
KIND_LOCAL = 1  # WSPRegisterMemory: a handle for local use
KIND_RDMA = 2  # WSPRegisterRdmaMemory: a descriptor for the peer

# --- Connection state of one endpoint (CONN-01) ------------------------------
CLOSED = 0
CONNECTED = 1
ERRORED = 2

# --- State of an endpoint's posted receive (XFER-02) -------------------------
RECV_IDLE = 0
RECV_POSTED = 1
RECV_DONE = 2


# --- The outcomes the SPI leaves open (RDMA-08) ------------------------------
# An RDMA call whose target is refused may answer at call time or fail the
# connection; the model lists both (Model.outcomes) and names each, so a
# caller asks for one with Model.outcome(name, args, REFUSED_BY_PEER).
AT_CALL = 0  # the call's own answer: success, or a refusal at call time (WSAEINVAL)
REFUSED_BY_PEER = 1  # the peer refuses the target: WSAECONNRESET, the connection fails (CONN-01)
OUTCOMES = {AT_CALL: "at call", REFUSED_BY_PEER: "refused by the peer"}
