"""The pack's own socket types. Their values are plain dsa_core objects; the host caches them between runs,
so nodes treat every input as read-only."""

from comfy_api.latest import io

DSAHead = io.Custom("DSA_HEAD")  # dsa_core.confidence_head.ConfidenceHead (or None: no head)
DSAState = io.Custom("DSA_STATE")  # nodes.sampling.StateBundle: an ARState plus what it was made with
DSAReport = io.Custom("DSA_REPORT")  # dict: dsa_core.records.RunRecord.to_dict()
