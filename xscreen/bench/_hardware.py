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
    """CPU model, cores, SIMD flags, memory, OS, Python and package versions, and the time (UTC)."""
    cpuinfo = _read_cpuinfo()
    return {
        "cpu_model": cpu_model(cpuinfo),
        "machine": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": _physical_cores(cpuinfo),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "simd": simd_features(cpuinfo),
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
