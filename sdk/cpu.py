"""What this CPU is and which of its instructions a precision needs.

    cpu_model()                 # "AMD EPYC 9R14 96-Core Processor", or platform.processor()
    int8_unsupported()          # None where int8 models run faster than fp32 here, else the reason
    bf16_unsupported()          # the same for bfloat16 networks (PyTorch / oneDNN)

Read from ``/proc/cpuinfo`` (Linux); elsewhere the model is ``platform.processor()`` and no flag is
known, so int8 and bf16 are refused rather than run on instructions nobody checked.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# int8 matrix products of ONNX Runtime (MLAS) that beat its float32 ones: AVX2's u8 x s8 multiply-add
# (and AVX-512 / VNNI where present) on x86-64, the dot-product extension on 64-bit ARM
INT8_FLAGS = {"x86_64": "avx2", "amd64": "avx2", "aarch64": "asimddp", "arm64": "asimddp"}
# bfloat16 dot products that oneDNN uses for bf16 convolutions: AVX-512 BF16 or AMX on x86-64, the
# BF16 extension on 64-bit ARM; without them bf16 is emulated in float32 and runs slower than fp32
BF16_FLAGS = {
    "x86_64": ("avx512_bf16", "amx_bf16"),
    "amd64": ("avx512_bf16", "amx_bf16"),
    "aarch64": ("bf16",),
    "arm64": ("bf16",),
}


def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo ({} where there is none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # the blank line after the first processor's block
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's model name (x86 "model name"; ARM has none: its "CPU part" or the machine type)."""
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    """Instruction-set flags of the CPU ("flags" on x86, "Features" on ARM); empty where unknown."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def int8_unsupported() -> str | None:
    """None where this CPU has the instructions int8 models need to run faster than fp32
    (:data:`INT8_FLAGS`), else why not, in words."""
    machine = platform.machine().lower()
    return _unsupported("int8", (INT8_FLAGS[machine],) if machine in INT8_FLAGS else None, machine)


def bf16_unsupported() -> str | None:
    """None where this CPU has one of the instruction sets bf16 networks need to run faster than
    fp32 (:data:`BF16_FLAGS`), else why not, in words."""
    machine = platform.machine().lower()
    return _unsupported("bf16", BF16_FLAGS.get(machine), machine)


def _unsupported(precision: str, flags: tuple[str, ...] | None, machine: str) -> str | None:
    if flags is None:
        return (
            f"{precision} models are only run on x86-64 and 64-bit ARM CPUs, not {machine or 'this machine'}"
        )
    if not set(flags) & cpu_flags():
        return (
            f"this CPU ({cpu_model()}) lacks {' and '.join(flags)}, which {precision} models need to run "
            "faster than fp32"
        )
    return None
