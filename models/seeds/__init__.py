"""The seed architectures under the streaming contract: SSMA (sparse top-k state matrix), AFSSM (adaptive
frequency-compressed selective SSM) and NSM (neural state machine). One model per file, registered like the
baselines; each seed's own entry points (SSMA_Model, AdaptiveFrequencySSM, …) are aliases in its file."""
