"""Model views for the Monitor: what a model reports about itself, drawn (see base.py).

Importing the package registers the built-in views: ponder time per token
("ponder_steps", Universal Transformer), expert load per layer
("expert_load", mixture of experts), loss with and without memory
("memory_loss", Transformer-XL) and segment weights ("segment_attention",
hierarchical encoder).
"""

from effstudio.gui.views import (
    cross_attention_view,
    expert_view,
    memory_view,
    patch_attention_view,
    ponder_view,
    segment_view,
)
from effstudio.gui.views.base import (
    METRICS,
    VIEWS,
    MetricStyle,
    ModelView,
    discover_views,
    metric_style,
    register_view,
    views_for,
)
from effstudio.gui.views.model_area import ModelViewArea

__all__ = [
    "METRICS", "VIEWS", "MetricStyle", "ModelView", "ModelViewArea", "cross_attention_view", "discover_views",
    "expert_view",
    "memory_view", "metric_style", "patch_attention_view", "ponder_view", "register_view", "segment_view",
    "views_for",
]
