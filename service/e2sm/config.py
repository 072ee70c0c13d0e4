"""Settings of the E2SM path (pydantic-settings, prefix MS3M_E2SM_: `MS3M_E2SM_KPM_VERSION=4`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.e2sm.ids import PLMN_PATTERN


class E2smSettings(BaseSettings):
    """KPM ingest and RC control; construct with keyword overrides in tests: `E2smSettings(rc_version=1)`."""

    model_config = SettingsConfigDict(env_prefix="MS3M_E2SM_", extra="ignore")

    kpm_version: Literal[2, 3, 4] = 3  # indications of unregistered subscriptions that do not say theirs
    rc_version: Literal[1, 5] = 5  # E2SM-RC of the control requests (RAN parameter ids and encodings)
    rc_ran_function_id: int = Field(3, ge=0, le=4095)  # RANfunctionID of E2SM-RC on the E2 nodes
    rc_requestor_id: int = Field(1, ge=0, le=65535)  # RICrequestID requestor of the control requests
    plmn: str = "00101"  # PLMN of the slices' RRM policy members and of the header's GUAMI
    rc_ue_amf_id: int = Field(0, ge=0, le=2**40 - 1)  # AMF UE NGAP id of the header's (mandatory) UE id
    rc_ack_requested: bool = True  # RICcontrolAckRequest
    control_log_size: int = Field(1000, ge=1)  # control requests kept for GET /v1/e2/control
    control_queue: int = Field(10_000, ge=1)  # per E2Control.StreamControl stream; beyond: dropped, counted

    @field_validator("plmn")
    @classmethod
    def _plmn(cls, v: str) -> str:
        if not PLMN_PATTERN.match(v):
            raise ValueError("plmn is MCC (3 digits) + MNC (2 or 3 digits), e.g. 00101")
        return v
