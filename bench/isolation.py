"""Every measured engine step runs in a fresh spawned process, so neither the sandbox's CPU nor
the driver's memory is counted as the engine's. Peak RSS is the kernel's high-water mark of that
process (``VmHWM``), which a fresh ``exec`` starts from zero.
"""

from __future__ import annotations

import multiprocessing
import resource
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psutil

from bench.common import MIRROR_CODE, code_fingerprint


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    return _status_field("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``VmHWM``), in MB."""
    return _status_field("VmHWM")


def _status_field(name: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_seconds() -> float:
    """CPU time every process of the machine has used since boot (all cores, not idle)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_isolated(
    function: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``function(*args)`` in a fresh spawned process; its result plus its peak RSS.

    ``function`` must be importable (module level). The result gains ``peak_rss_mb``,
    ``start_rss_mb`` (after imports, before the work) and ``cpu_s`` of that process. After
    ``timeout`` seconds the process is terminated and ``TimeoutError`` raised.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_isolated_main, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            process.terminate()
            process.join()
            raise TimeoutError(f"{function.__name__} did not finish in {timeout} s")
        outcome = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the engine process died (exit code {process.exitcode})") from None
    process.join()
    if "error" in outcome:
        raise RuntimeError(f"the engine process failed:\n{outcome['error']}")
    return dict(outcome["result"])


def _isolated_main(
    sender: Connection, function: Callable[..., dict[str, Any]], args: tuple[Any, ...]
) -> None:
    start_rss = rss_mb()
    code = code_fingerprint(MIRROR_CODE)
    try:
        result = function(*args)
        result.update(
            code=code,
            peak_rss_mb=round(peak_rss_mb(), 1),
            start_rss_mb=round(start_rss, 1),
            cpu_s=round(cpu_seconds(), 2),
        )
        sender.send({"result": result})
    except BaseException:
        sender.send({"error": traceback.format_exc()})
    finally:
        sender.close()
