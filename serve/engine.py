"""Moved to `empathy/engine.py` (serve and training both start vLLM children; neither imports the other).

Kept so that code not yet updated keeps working; import `empathy.engine` in new code.
"""

from empathy.engine import (  # noqa: F401
    EngineProcess,
    EngineSpec,
    EngineSupervisor,
    die_with_parent,
    lora_rank_for,
    spec_from_settings,
)
