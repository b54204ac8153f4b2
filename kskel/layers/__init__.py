"""Serializable Keras layers of the ST-GCN encoder."""

from kskel.layers.batch_norm import BatchNorm
from kskel.layers.graph_conv import GraphConv
from kskel.layers.projection_head import ProjectionHead
from kskel.layers.stgcn_block import STGCNBlock

__all__ = ["BatchNorm", "GraphConv", "ProjectionHead", "STGCNBlock"]
