"""Machine facts for the results JSON: library versions, CPU ISA flags, GPU and driver."""

from __future__ import annotations

from pathlib import Path

INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                     "amx_bf16", "avx_vnni")


def cpu_flags(cpuinfo: str | None = None) -> dict[str, bool]:
    """Whether the CPU has each instruction-set extension the kernels choose by (`cpuinfo`: the
    text of /proc/cpuinfo, read when None); empty where there is no flags line (not x86)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {f: f in flags for f in INTERESTING_FLAGS}
    return {}


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """Which processor this is (`cpuinfo`: the text of /proc/cpuinfo, read when None), closely
    enough to tell apart two machines that report the same name: oneDNN and MKL choose kernels
    by instruction set, so one seeded recipe trained on two CPU models (or thread counts) ends
    with different weights."""
    import hashlib

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    text = cpuinfo.lstrip("\n")  # a leading blank line made an empty "first block"
    first = text.split("\n\n", 1)[0]  # the first logical processor's block
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in first.splitlines())
    )
    if "flags" not in fields:
        # not x86 (ARM lists `Features` and names its core by implementer and part), or no
        # flags at all: claim no x86 extension absent, and hash ARM's Features (none: None),
        # or every ARM core read as the same processor (all None, the hash of nothing)
        return {
            "name": fields.get("model name"),
            "vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
            "family": fields.get("cpu family") or fields.get("CPU architecture"),
            "model": fields.get("model") or fields.get("CPU part"),
            "stepping": fields.get("stepping") or fields.get("CPU revision"),
            "flags_sha256": hashlib.sha256(
                " ".join(sorted(fields.get("Features", "").split())).encode()
            ).hexdigest()[:16] if "Features" in fields else None,
            "isa": {},
        }
    flags = sorted(fields["flags"].split())
    return {
        "name": fields.get("model name"),
        "vendor": fields.get("vendor_id"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "stepping": fields.get("stepping"),
        # every flag, hashed: two hosts with equal hashes expose the same instruction sets
        "flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "isa": {f: f in flags for f in INTERESTING_FLAGS},
    }


def gpu_info() -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}
    try:
        import subprocess

        info["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
    return info


def machine_info() -> dict:
    import torch

    from defectbench.zoo.build import library_versions

    return {
        "defectbench_versions": library_versions(),
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_info(),
    }
