"""The ASN.1 modules of asn/ compiled with asn1tools (aligned PER), once per process and version, when first
used: KPM v02.00 / v03.00 / v04.00 and RC v01.xx / v05.00, each with the E2SM common IEs."""

from __future__ import annotations

import functools
from pathlib import Path

ASN_DIR = Path(__file__).resolve().parent / "asn"
KPM_VERSIONS = (2, 3, 4)
RC_VERSIONS = (1, 5)


class E2smError(ValueError):
    """A payload that is not a valid E2SM message of the expected kind and version (its reason)."""


def _compile(name: str):
    import asn1tools  # imported here: `ms3m --help` and the protobuf-only service never load it

    return asn1tools.compile_files([str(ASN_DIR / "e2sm_common.asn"), str(ASN_DIR / name)], "per")


@functools.cache
def kpm_spec(version: int):
    """The compiled E2SM-KPM module of `version` (2, 3 or 4)."""
    if version not in KPM_VERSIONS:
        raise E2smError(f"E2SM-KPM version {version} is not supported (supported: {list(KPM_VERSIONS)})")
    return _compile(f"e2sm_kpm_v{version}.asn")


@functools.cache
def rc_spec(version: int):
    """The compiled E2SM-RC module of `version` (1 or 5)."""
    if version not in RC_VERSIONS:
        raise E2smError(f"E2SM-RC version {version} is not supported (supported: {list(RC_VERSIONS)})")
    return _compile(f"e2sm_rc_v{version}.asn")


def asn1_errors() -> tuple[type[BaseException], ...]:
    """What asn1tools raises on bad input or values (and what a broken encoding can trip inside it)."""
    import asn1tools

    return (asn1tools.Error, ValueError, TypeError, KeyError, IndexError, ArithmeticError, AttributeError,
            NotImplementedError, RecursionError)
