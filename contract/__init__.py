"""Facts shared by the models (`models/`) and the xApp (`service/`), defined once, without torch: the
objectives and their vector, the series key, the bundle format, well-known KPI names and the synthetic
traffic physics. See docs/architecture.md, "Layout"."""
