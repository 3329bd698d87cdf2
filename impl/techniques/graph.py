"""Graph convolution (GCN, Kipf and Welling 2017) written out: D^-1/2 (A + I) D^-1/2 X W + b.

Curriculum: 002 Q43 (v1: ``GCNConv(16, 32)`` -> ReLU -> ``GCNConv(32, 4)`` -> log_softmax on a
10-node graph with the directed edges 0->1, 1->2, 2->0; v2: the same with dropout 0.5, on Cora).
Catalog §2 ``gcn_propagation``: a GCN layer equals D^-1/2 (A + I) D^-1/2 X W + b with self-loops
added, a hand-written reference matches ``torch_geometric.nn.GCNConv``, and relabelling the nodes
permutes the output the same way (permutation equivariance).

What "equal to GCNConv" takes, beyond the formula:
- Orientation. A GCN layer is message passing: node i sums messages from the nodes j with an
  edge j -> i. In the dense form here ``adj[..., i, j]`` is the weight of the edge j -> i (row i
  lists what node i receives), so out = Â X W. ``torch_geometric.utils.to_dense_adj`` builds the
  transpose (``[source, target]``); on a directed graph, like the curriculum's, feeding it to the
  formula gives a different answer (``edge_index_to_adjacency`` builds ours).
- Degrees. D is the row sum of A + I: the in-degree plus the self-loop, as GCNConv's
  ``gcn_norm`` computes it (on the edge targets), so Â[i, j] = w(j -> i) / sqrt(d_i d_j).
- Self-loops already present are kept, not doubled: GCNConv adds only the *remaining* self-loops
  (``add_remaining_self_loops``: a node with a loop keeps its loop's weight, one without gets a
  loop of weight 1). A literal A + I would give such a node a loop of weight 2.
- Isolated nodes have degree 1 (their own loop): their output is x W + b.
- Multi-edges (the same j -> i listed twice) add up, in both forms.

Two forms of the same layer: ``gcn_norm_dense`` + a matmul for a dense, batched adjacency (small
graphs, a batch of graphs of one size), and ``gcn_norm_edges`` + ``gcn_propagate`` for an
``edge_index`` (2, E) with ``index_add_`` (large sparse graphs; nothing N x N is built).
``GCNLayer`` takes either. Its parameters are laid out as GCNConv's (``weight`` (out, in) like
``GCNConv.lin.weight``, glorot-initialised; ``bias`` zeros), so weights copy across one to one.
Dimension key: B graphs in a batch, N nodes, E edges, F input features, O output features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.techniques.registry import Category, register_technique


def _weighted_adjacency(generator: torch.Generator) -> tuple[Tensor]:
    """A (2, 5, 5) float64 weighted adjacency, sparse off the diagonal, with a self-loop of random
    positive weight on every node (a missing loop is filled with the constant 1, so with a zero
    diagonal entry a finite difference would jump between the two branches)."""
    weights = torch.rand(2, 5, 5, generator=generator, dtype=torch.float64) + 0.5
    edges = torch.rand(2, 5, 5, generator=generator) < 0.5
    adj = weights * edges
    adj.diagonal(dim1=-2, dim2=-1).copy_(weights.diagonal(dim1=-2, dim2=-1))
    return (adj,)


@gradcheck_function(_weighted_adjacency)
def gcn_norm_dense(adj: Tensor) -> Tensor:
    """Â = D^-1/2 (A with its remaining self-loops) D^-1/2, D the row sums (in-degree + loop).

    ``adj[..., i, j]`` is the weight of the edge j -> i (0 where none); a bool adjacency is read
    as weights 1. A diagonal entry that is 0 becomes 1 (the added self-loop); a non-zero one is
    kept, as GCNConv keeps an existing self-loop's weight.
    Shape: (..., N, N) -> (..., N, N), floating (float32 for a bool adjacency)
    """
    if adj.dim() < 2 or adj.shape[-1] != adj.shape[-2]:
        raise ValueError(f"expected a square adjacency (..., N, N), got {list(adj.shape)}")
    adj = adj.float() if not adj.is_floating_point() else adj
    diagonal = adj.diagonal(dim1=-2, dim2=-1)  # (..., N)
    loops = torch.where(diagonal != 0, diagonal, torch.ones_like(diagonal))  # (..., N)
    with_loops = adj - torch.diag_embed(diagonal) + torch.diag_embed(loops)  # (..., N, N)
    deg_inv_sqrt = with_loops.sum(dim=-1).pow(-0.5)  # (..., N); every degree >= its loop > 0
    return deg_inv_sqrt.unsqueeze(-1) * with_loops * deg_inv_sqrt.unsqueeze(-2)


def _edge_check_case(generator: torch.Generator) -> tuple[Tensor, int, Tensor]:
    """6 nodes: 8 random directed edges (duplicates possible), then loops on nodes 0 and 3 (each
    listed once), all with positive weights."""
    edges = torch.randint(0, 6, (2, 8), generator=generator)
    edges = edges[:, edges[0] != edges[1]]
    loops = torch.tensor([[0, 3], [0, 3]])
    edge_index = torch.cat([edges, loops], dim=1)  # (2, E)
    edge_weight = torch.rand(edge_index.shape[1], generator=generator, dtype=torch.float64) + 0.5
    return edge_index, 6, edge_weight


@no_gradcheck("returns the integer edge list beside the weights; checked through gcn_propagate")
def gcn_norm_edges(
    edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The edge form of ``gcn_norm_dense``: (edges with remaining self-loops, their weights Â).

    Edge k goes from ``edge_index[0, k]`` (source j) to ``edge_index[1, k]`` (target i), weight
    ``edge_weight[k]`` (1 by default). As GCNConv's ``gcn_norm``: existing self-loops keep their
    weight (list each loop once: of a loop listed twice only one weight counts), every node
    without one gets a loop of weight 1, and w(j -> i) becomes w / sqrt(d_i d_j) with d the
    weighted in-degree including the loop.
    Shape: (2, E), (E,) -> (2, E' ) long, (E',) with E' = E - loops + N
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"expected edge_index (2, E), got {list(edge_index.shape)}")
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.shape[1], device=edge_index.device)
    source, target = edge_index
    is_loop = source == target  # (E,)
    loop_weight = torch.ones(num_nodes, dtype=edge_weight.dtype, device=edge_weight.device)
    loop_weight = loop_weight.index_put((source[is_loop],), edge_weight[is_loop])  # (N,)
    nodes = torch.arange(num_nodes, device=edge_index.device)
    edges = torch.cat([edge_index[:, ~is_loop], torch.stack([nodes, nodes])], dim=1)  # (2, E')
    weight = torch.cat([edge_weight[~is_loop], loop_weight])  # (E',)
    degree = torch.zeros(num_nodes, dtype=weight.dtype, device=weight.device)
    degree = degree.index_add(0, edges[1], weight)  # (N,): weighted in-degree + loop
    deg_inv_sqrt = degree.pow(-0.5)
    # a node whose only incoming weight is a loop of weight 0 has degree 0: no messages at all
    deg_inv_sqrt = deg_inv_sqrt.masked_fill(torch.isinf(deg_inv_sqrt), 0.0)
    return edges, deg_inv_sqrt[edges[0]] * weight * deg_inv_sqrt[edges[1]]


def _propagate_case(generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    edge_index, _, edge_weight = _edge_check_case(generator)
    return randn(generator, 6, 3), edge_index, edge_weight


@gradcheck_function(_propagate_case)
def gcn_propagate(x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
    """Â X by message passing: out[i] = sum over edges j -> i (and i's loop) of Â_ij x_j.

    Shape: x (N, F), edge_index (2, E), edge_weight (E,) -> (N, F)
    """
    edges, norm = gcn_norm_edges(edge_index, x.shape[0], edge_weight)  # (2, E'), (E',)
    messages = norm.unsqueeze(-1) * x[edges[0]]  # (E', F): from each edge's source
    return torch.zeros_like(x).index_add(0, edges[1], messages)  # summed at the targets


@gradcheck_function(lambda g: (torch.randint(0, 4, (2, 6), generator=g), 4, randn(g, 6)))
def edge_index_to_adjacency(
    edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None
) -> Tensor:
    """The dense adjacency of ``gcn_norm_dense``: ``adj[i, j]`` = summed weight of the edges
    j -> i. The transpose of ``torch_geometric.utils.to_dense_adj``, which is [source, target].

    Shape: (2, E), (E,) -> (N, N)
    """
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.shape[1], device=edge_index.device)
    adj = torch.zeros(num_nodes, num_nodes, dtype=edge_weight.dtype, device=edge_index.device)
    return adj.index_put((edge_index[1], edge_index[0]), edge_weight, accumulate=True)


def _layer_inputs(generator: torch.Generator) -> tuple[Tensor, Tensor]:
    return randn(generator, 2, 5, 3), torch.rand(2, 5, 5, generator=generator) < 0.4


@gradcheck_module(lambda: GCNLayer(3, 2), _layer_inputs)
class GCNLayer(nn.Module):
    """One GCN layer, Â X W + b, from a dense adjacency or an ``edge_index``.

    ``graph`` is either an integer ``edge_index`` (2, E) (x must be one graph, (N, F)), or a
    dense adjacency, bool or float, ``graph[..., i, j]`` = weight of j -> i, broadcastable
    against x's batch. ``edge_weight`` goes with an ``edge_index`` only.
    Shape: x (..., N, F) -> (..., N, O)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))  # as GCNConv.lin
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GCNConv's initialisation: glorot (Xavier uniform) weight, zero bias."""
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, graph: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        h = x @ self.weight.T  # (..., N, O): transform first, then propagate the narrower one
        if graph.is_floating_point() or graph.dtype == torch.bool:
            if edge_weight is not None:
                raise ValueError("edge_weight goes with an edge_index; weight the adjacency")
            out = gcn_norm_dense(graph).to(h.dtype) @ h  # (..., N, O)
        else:
            if x.dim() != 2:
                raise ValueError(f"an edge_index takes one graph's x (N, F), got {list(x.shape)}")
            out = gcn_propagate(h, graph, edge_weight)  # (N, O)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


register_technique(
    name="gcn_propagation",
    category=Category.MODULE,
    curriculum="002 Q43",
    summary="GCN layer D^-1/2 (A+I) D^-1/2 X W + b, dense or by message passing: remaining "
    "self-loops only, in-degrees, permutation-equivariant",
    api="torch_geometric.nn.GCNConv, torch_geometric.nn.DenseGCNConv",
    also_in=("impl.models.gcn",),
)
