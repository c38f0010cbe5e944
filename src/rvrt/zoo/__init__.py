"""The model zoo: names, aliases, architectures, configs and published weights.

Every registered model is a :class:`ModelSpec`: a canonical name (``rvrt.sr_bi_reds``), the
official task name as an alias (``001_RVRT_videosr_bi_REDS_30frames``), its architecture and
config (the official constructor keyword arguments), the published weights (URL, checksum,
licence) and the paper's numbers. Architectures are looked up in :data:`ARCHITECTURES`.

Configuration is data: add a model by adding a record (:mod:`rvrt.zoo.records`), not a branch.
"""

from rvrt.zoo import records  # noqa: F401  (registers every model)
from rvrt.zoo.spec import (
    ARCHITECTURES,
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    Architecture,
    Metric,
    ModelSpec,
    WeightsSpec,
    default_model_for_scale,
    get_spec,
    list_models,
    register,
)

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "DEFAULT_MODEL",
    "DEFAULT_WEIGHTS",
    "Metric",
    "ModelSpec",
    "WeightsSpec",
    "default_model_for_scale",
    "get_spec",
    "list_models",
    "register",
]
