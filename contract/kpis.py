"""Well-known KPI names (E2SM-KPM measurement names, 3GPP TS 28.552) with their units, and the set the
synthetic dataset and the simulator produce, in their column order."""

from __future__ import annotations

DL_THROUGHPUT = "DRB.UEThpDl"
PRB_USAGE_DL = "RRU.PrbUsedDl"

UNITS: dict[str, str] = {
    DL_THROUGHPUT: "kbit/s",  # mean DL UE throughput
    "DRB.UEThpUl": "kbit/s",  # mean UL UE throughput
    PRB_USAGE_DL: "%",  # DL PRB utilization, 0..100
    "RRC.ConnMean": "UEs",  # mean number of RRC-connected UEs
    "DRB.RlcSduDelayDl": "ms",  # DL RLC SDU delay
    "RF.serving.RSRP": "dBm",  # mean serving RSRP
    "RF.serving.RSRQ": "dB",  # mean serving RSRQ
    "RF.serving.RSSINR": "dB",  # mean serving SINR
    "DRB.UECqiDl": "0..15",  # mean reported DL CQI
    "PEE.AvgPower": "W",  # mean power consumption
}

SYNTHETIC_KPIS: tuple[str, ...] = tuple(UNITS)  # the synthetic dataset's and the simulator's column order
SLICE_KPIS: tuple[str, ...] = SYNTHETIC_KPIS[:5]  # the KPIs also reported per network slice
DEFAULT_TARGETS: tuple[str, ...] = (DL_THROUGHPUT, PRB_USAGE_DL)  # what the demo and benchmarks forecast
