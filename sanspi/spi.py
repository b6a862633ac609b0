"""The SPI's own numbers: WSA result codes, registration flags, extension
GUIDs, version words (Ws2san.h and Winsock's error table).

Shared by the model and the providers; nothing here is a rule of the model.
"""

from __future__ import annotations

import uuid

# --- WSA results (Winsock numbers) -----------------------------------------
OK = 0
WSA_IO_PENDING = 997
WSA_OPERATION_ABORTED = 995
WSAEFAULT = 10014
WSAEINVAL = 10022
WSAEINPROGRESS = 10036
WSAEOPNOTSUPP = 10045
WSAENETRESET = 10052
WSAECONNABORTED = 10053
WSAECONNRESET = 10054
WSAENOBUFS = 10055
WSAENOTCONN = 10057
WSAEPROCLIM = 10067
WSASYSNOTREADY = 10091
WSAVERNOTSUPPORTED = 10092

WSA_NAMES = {
    OK: "0",
    WSA_IO_PENDING: "WSA_IO_PENDING",
    WSA_OPERATION_ABORTED: "WSA_OPERATION_ABORTED",
    WSAEFAULT: "WSAEFAULT",
    WSAEINVAL: "WSAEINVAL",
    WSAEINPROGRESS: "WSAEINPROGRESS",
    WSAEOPNOTSUPP: "WSAEOPNOTSUPP",
    WSAENETRESET: "WSAENETRESET",
    WSAECONNABORTED: "WSAECONNABORTED",
    WSAECONNRESET: "WSAECONNRESET",
    WSAENOBUFS: "WSAENOBUFS",
    WSAENOTCONN: "WSAENOTCONN",
    WSAEPROCLIM: "WSAEPROCLIM",
    WSASYSNOTREADY: "WSASYSNOTREADY",
    WSAVERNOTSUPPORTED: "WSAVERNOTSUPPORTED",
}


def wsa_name(code: int) -> str:
    """The WSA name of a result code, or the number when it is not one."""
    return WSA_NAMES.get(code, str(code))


# --- Registration flags (ACC-01) --------------------------------------------
MEM_READ = 1
MEM_WRITE = 2
MEM_READWRITE = 3
VALID_FLAGS = (MEM_READ, MEM_WRITE, MEM_READWRITE)

# --- Extension functions, by the GUID the switch asks for (EXT-02) -----------
# The model names each by a small index; GUIDS maps index -> GUID.
FN_REGISTER_MEMORY = 0
FN_DEREGISTER_MEMORY = 1
FN_REGISTER_RDMA_MEMORY = 2
FN_DEREGISTER_RDMA_MEMORY = 3
FN_RDMA_WRITE = 4
FN_RDMA_READ = 5
FN_CACHE_CALLBACK = 6
FN_UNKNOWN = 7  # any GUID not in the table

GUIDS = {
    FN_REGISTER_MEMORY: uuid.UUID("C0B422F5-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_DEREGISTER_MEMORY: uuid.UUID("C0B422F6-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_REGISTER_RDMA_MEMORY: uuid.UUID("C0B422F7-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_DEREGISTER_RDMA_MEMORY: uuid.UUID("C0B422F8-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_RDMA_WRITE: uuid.UUID("C0B422F9-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_RDMA_READ: uuid.UUID("C0B422FA-F58C-11D1-AD6C-00C04FA34A2D"),
    FN_CACHE_CALLBACK: uuid.UUID("E5DA4AF8-D824-48CD-A799-6337A98ED2AF"),
}
FN_NAMES = {
    FN_REGISTER_MEMORY: "WSPRegisterMemory",
    FN_DEREGISTER_MEMORY: "WSPDeregisterMemory",
    FN_REGISTER_RDMA_MEMORY: "WSPRegisterRdmaMemory",
    FN_DEREGISTER_RDMA_MEMORY: "WSPDeregisterRdmaMemory",
    FN_RDMA_WRITE: "WSPRdmaWrite",
    FN_RDMA_READ: "WSPRdmaRead",
    FN_CACHE_CALLBACK: "WSPMemoryRegistrationCacheCallback",
}


def function_index(guid: uuid.UUID | bytes | str) -> int:
    """The model's index for a GUID, FN_UNKNOWN for any other value."""
    try:
        if isinstance(guid, bytes):
            guid = uuid.UUID(bytes_le=guid) if len(guid) == 16 else None
        elif isinstance(guid, str):
            guid = uuid.UUID(guid)
    except ValueError:
        return FN_UNKNOWN
    for index, known in GUIDS.items():
        if guid == known:
            return index
    return FN_UNKNOWN


#: Size of a function pointer, the least output buffer the lookup accepts.
POINTER_SIZE = 8

#: Versions: the word carries the major version in the low byte (2.2 = 0x0202).
LOWEST_VERSION = (2, 2)  # the SAN extensions need Winsock 2.2
HIGHEST_VERSION = (2, 2)


__all__ = ['FN_CACHE_CALLBACK', 'FN_DEREGISTER_MEMORY', 'FN_DEREGISTER_RDMA_MEMORY', 'FN_NAMES', 'FN_RDMA_READ', 'FN_RDMA_WRITE', 'FN_REGISTER_MEMORY', 'FN_REGISTER_RDMA_MEMORY', 'FN_UNKNOWN', 'GUIDS', 'HIGHEST_VERSION', 'LOWEST_VERSION', 'MEM_READ', 'MEM_READWRITE', 'MEM_WRITE', 'OK', 'POINTER_SIZE', 'VALID_FLAGS', 'WSAECONNABORTED', 'WSAECONNRESET', 'WSAEFAULT', 'WSAEINPROGRESS', 'WSAEINVAL', 'WSAENETRESET', 'WSAENOBUFS', 'WSAENOTCONN', 'WSAEOPNOTSUPP', 'WSAEPROCLIM', 'WSASYSNOTREADY', 'WSAVERNOTSUPPORTED', 'WSA_IO_PENDING', 'WSA_NAMES', 'WSA_OPERATION_ABORTED', 'function_index', 'wsa_name']
