"""Native O-RAN encodings (README, "E2SM-KPM and E2SM-RC"): E2SM-KPM indications in, E2SM-RC control out.

asn/ holds the ASN.1 subsets (KPM v02.00–v04.00, RC v01.xx and v05.00, the E2SM common IEs) that specs.py
compiles with asn1tools; aper.py and kpm_fast.py are the specialised aligned-PER codec of the hot KPM
messages; kpm.py maps indications to KPI reports; subscription.py writes event trigger / action definitions
and binds indications to cells; ingest.py feeds the ingest pipeline; rc.py and sink.py encode and deliver
control requests; config.py, rest.py and cli.py are the settings, REST routes and `ms3m e2` commands.
Importing the package does not import asn1tools (it is loaded when a codec is first used).
"""
