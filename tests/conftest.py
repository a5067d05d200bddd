"""Rules of the whole test suite.

Loopback only (issue 22, S1). sweeplab's own servers listen on 127.0.0.1 only
(``sweep/cluster.py``), and so must every server a test starts: a test run on a shared
machine must not open ports to the network. ``socket.socket.listen`` is wrapped for the
session: listening on any other address (``0.0.0.0``, ``::``, a host address) raises
``OSError`` before the socket accepts anything, and the test that did it fails, naming the
address. Servers in child processes (a ``processes=True`` LocalCluster, Snakemake jobs) are
checked by the tests that start them (``tests/sweep/test_cluster.py``, psutil).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

#: Test modules that still start a LocalCluster whose worker HTTP server binds every
#: interface (no ``worker_dashboard_address="127.0.0.1:0"``): their listeners are reported in
#: the summary instead of failing, until the module passes the loopback address. Remove an
#: entry once fixed; add none.
PENDING_LOOPBACK_FIX: frozenset[str] = frozenset()

_EXPOSED: list[str] = []  # refused listeners not yet reported by a test
_TOLERATED: dict[str, set[str]] = {}  # module -> addresses (PENDING_LOOPBACK_FIX)
_CURRENT: list[str] = [""]  # file name of the test being run
_real_listen = socket.socket.listen


def beyond_loopback(sock: socket.socket) -> str | None:
    """Return ``host:port`` if the inet socket ``sock`` is bound beyond loopback, else None."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    host, port = sock.getsockname()[:2]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"{host}:{port}"
    mapped = getattr(ip, "ipv4_mapped", None)
    if ip.is_loopback or (mapped is not None and mapped.is_loopback):
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen(self: socket.socket, *args: int) -> None:
    where = beyond_loopback(self)
    if where is not None:
        if _CURRENT[0] in PENDING_LOOPBACK_FIX:
            _TOLERATED.setdefault(_CURRENT[0], set()).add(where.rsplit(":", 1)[0])
        else:
            _EXPOSED.append(where)
            raise OSError(
                errno.EACCES,
                f"tests listen on loopback only, not on {where} (tests/conftest.py); pass a "
                "loopback address, e.g. LocalCluster(..., worker_dashboard_address="
                "'127.0.0.1:0')",
            )
    return _real_listen(self, *args)


socket.socket.listen = _listen  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _CURRENT[0] = item.path.name  # module fixtures start and end inside the protocol too
    try:
        return (yield)
    finally:
        _CURRENT[0] = ""


@pytest.fixture(autouse=True)
def loopback_only():
    """Fail the test if it (or a fixture it uses) listened beyond loopback; yield the list."""
    yield _EXPOSED
    if _EXPOSED:
        found = ", ".join(_EXPOSED)
        _EXPOSED.clear()
        pytest.fail(f"listened beyond loopback (refused): {found}", pytrace=False)


def pytest_terminal_summary(terminalreporter):
    for module, hosts in sorted(_TOLERATED.items()):
        terminalreporter.write_line(
            f"loopback: {module} listened on {', '.join(sorted(hosts))} (tolerated until it "
            "passes a loopback worker_dashboard_address; see tests/conftest.py)"
        )


#: test files started first: the longest (the tiny workflow run and the incremental test, about
#: two minutes on one worker); with ``--dist loadfile --no-loadscope-reorder`` (``make test``) a
#: file runs on one worker, so the other worker takes every other file meanwhile instead of
#: waiting for this one at the end
FIRST = ("tests/workflow/test_workflow.py",)


def pytest_collection_modifyitems(session, config, items):
    """Run :data:`FIRST` files first (the same order on every xdist worker)."""
    first = [i for i in items if i.nodeid.startswith(FIRST)]
    if first:
        ids = {id(i) for i in first}
        items[:] = first + [i for i in items if id(i) not in ids]


_UNSET = object()


@pytest.fixture(autouse=True)
def _dask_default_scheduler_kept():
    """Restore dask's default ``scheduler`` after each test, warning if a test changed it.

    A ``distributed.Client`` sets itself as the process's default scheduler; one left behind
    (a failed or unclosed client) made a later test's dask computation wait forever (a
    ``make test`` hung in ``export``). The warning names the test that left it.
    """
    import dask

    before = dask.config.config.get("scheduler", _UNSET)
    yield
    # A Client whose connection failed stays registered as the global client (status not
    # "closed") while anything references it; dask's get_scheduler then hands a later test's
    # computation to it, which waits forever (``sweeplab info`` hung in ``Client.gather``).
    from distributed import client as dclient

    for c in list(dclient._global_clients.values()):
        if c.status != "running":
            dclient._del_global_client(c)
    after = dask.config.config.get("scheduler", _UNSET)
    if after is not before:
        if before is _UNSET:
            dask.config.config.pop("scheduler", None)
        else:
            dask.config.config["scheduler"] = before
        import warnings

        warnings.warn(f"the test left dask's default scheduler set to {after!r}", stacklevel=1)
