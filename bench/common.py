"""What bench/run and bench/signal share: logging, medians and a description of the machine."""

import os
import platform
import statistics
import sys
import time

GIB = 1 << 30


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def median(runs, key):
    """The median of `key` over the runs that have it, or None."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def machine():
    """CPU, memory, kernel, date and the load average now: the context of every figure."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d"),
        "load_at_start": load_average(),
    }
