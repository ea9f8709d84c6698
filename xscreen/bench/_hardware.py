"""The machine and software a benchmark ran on, so a number is never quoted without its context."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

from .. import __version__

# SIMD features that decide inference speed, by the name /proc/cpuinfo gives them.
X86_SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
            "avx512_bf16", "amx_int8")
ARM_SIMD = ("neon", "asimd", "asimddp", "asimdhp", "i8mm", "sve", "bf16")
# Distributions whose versions a reader needs to reproduce a figure; read from metadata, never imported.
SOFTWARE = ("numpy", "Pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime", "tensorflow-cpu", "tensorflow",
            "keras")


def hardware_fingerprint() -> dict:
    """CPU model, cores, SIMD flags, memory, OS, Python and package versions, and the time (UTC).

    Under user-mode emulation (qemu-user), ``emulated`` is True and ``cpu_model`` says so: the
    timings are then the emulator's, not the emulated machine's.
    """
    cpuinfo = _read_cpuinfo()
    machine = platform.machine()
    emulated = is_emulated(machine, cpuinfo)
    model = cpu_model(cpuinfo)
    return {
        "cpu_model": f"{machine} emulated by qemu on {model}" if emulated and "qemu" not in model.lower() else model,
        "emulated": emulated,
        "machine": machine,
        "cores_logical": os.cpu_count(),
        "cores_physical": _physical_cores(cpuinfo),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": simd_features([] if emulated else cpuinfo),
        "memory_mb": _memory_mb(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "xscreen": __version__,
        "packages": {name: _version(name) for name in SOFTWARE if _version(name)},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _read_cpuinfo() -> list[dict[str, str]]:
    """One dict per processor block of /proc/cpuinfo; empty where it does not exist (macOS, Windows)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return []


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo text as one dict per block, keys lower-cased."""
    blocks = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        blocks.append(fields)
    return blocks


def cpu_model(cpuinfo: list[dict[str, str]]) -> str:
    # x86 says "model name"; a Raspberry Pi puts its board in a trailing block as "model".
    for key in ("model name", "model", "hardware", "cpu model"):
        for block in cpuinfo:
            if block.get(key) and not block[key].isdigit():
                return block[key]
    return platform.processor() or platform.machine() or "unknown"


def is_emulated(machine: str, cpuinfo: list[dict[str, str]]) -> bool:
    """True when this process runs under user-mode emulation (qemu-user).

    qemu-user 7.x (Debian 12) translates an arm64 process on an x86-64 host but passes the host's
    /proc/cpuinfo through: the process reads its own machine as ``aarch64`` and an AMD or Intel CPU
    with SSE flags, which no real machine does. A cpuinfo made for the emulated board (as
    benchmarks/aarch64/run.sh mounts) says "qemu" in its model line instead.
    """
    if "qemu" in cpu_model(cpuinfo).lower():
        return True
    process = _ARCH_FAMILIES.get(machine.lower())
    flags = {f for block in cpuinfo for f in (block.get("flags") or block.get("features") or "").split()}
    if any("vendor_id" in block for block in cpuinfo) or "sse2" in flags:
        cpu = "x86"
    elif any("cpu implementer" in block for block in cpuinfo) or flags & {"asimd", "neon"}:
        cpu = "arm"
    else:
        return False
    return process is not None and process != cpu


_ARCH_FAMILIES = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86",
                  "aarch64": "arm", "arm64": "arm", "armv7l": "arm", "armv6l": "arm", "armv8l": "arm"}


def _physical_cores(cpuinfo: list[dict[str, str]]) -> int | None:
    pairs = {(b.get("physical id"), b.get("core id")) for b in cpuinfo if "core id" in b}
    if pairs:
        return len(pairs)
    # ARM /proc/cpuinfo has no core ids; sysfs topology does.
    cores = set()
    for topo in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            continue
    return len(cores) or None


def simd_features(cpuinfo: list[dict[str, str]]) -> list[str]:
    flags = set()
    for block in cpuinfo:
        flags.update((block.get("flags") or block.get("features") or "").split())
    if "asimd" in flags:
        flags.add("neon")  # 64-bit ARM calls NEON "asimd"
    if flags:
        return [name for name in X86_SIMD + ARM_SIMD if name in flags]
    if platform.machine().lower() in ("arm64", "aarch64"):
        return ["neon"]  # mandatory on 64-bit ARM (Apple silicon reports no /proc/cpuinfo)
    return []


def _memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
