"""Facts shared by the models (`models/`) and the xApp (`service/`), defined once, without torch: the
objectives and their vector, the series key, the bundle format. See docs/architecture.md."""
