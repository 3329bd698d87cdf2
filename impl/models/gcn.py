"""Two-layer graph convolutional network for node classification, written by hand.

Curriculum: 002 Q43. v1: ``GCNConv(16, 32)`` -> ReLU -> ``GCNConv(32, 4)`` -> ``log_softmax``,
run on 10 nodes with 16 random features and the directed edges 0->1, 1->2, 2->0 (676
parameters; the snippet lacks ``import torch`` and ``nn`` and raises NameError as written). v2: the
same with dropout 0.5 between the layers, trained on Cora (``Planetoid``, a download) with Adam
lr 0.01, weight decay 5e-4, 200 epochs, ``nll_loss`` on the training mask.

Ours: the layers are ``impl.techniques.graph.GCNLayer`` (D^-1/2 (A+I) D^-1/2 X W + b, checked
equal to ``torch_geometric.nn.GCNConv``; technique ``gcn_propagation``), the model's reference is
PyG's ``DenseGCNConv`` with the same weights, and ``log_softmax`` is over the last dim (the seed's
``dim=1`` is the class dim only for one unbatched graph). Two registered models:
- ``gcn_2layer`` (v1): batches of random directed graphs (Erdős–Rényi, edge probability
  ``edge_prob``) with standard normal node features; any node count from 1 to ``max_nodes``.
- ``gcn_karate`` (v2 on data that needs no download, catalog D-cora): Zachary's karate club, 34
  nodes, 78 undirected edges, one-hot identity node features (as ``torch_geometric.datasets.
  KarateClub``), labels the two clubs of networkx's ``club`` attribute (Mr. Hi 0, Officer 1).

A batch is B independent graphs of N nodes each: node features (B, N, F) and a dense bool
adjacency (B, N, N), ``adj[b, i, j]`` True for an edge j -> i (what ``impl.techniques.graph.
edge_index_to_adjacency`` builds). The registry's checks need a batch of independent samples on
dim 0, and a graph is one sample; for the karate club each sample is the club's graph with its
nodes relabelled at random (one-hot features of the original ids travel with the nodes, and so
do the labels). The model also takes the seed's call, one graph: x (N, F) and an edge_index (2, E)
-> (N, C).
Dimension key: B graphs, N nodes, F node features, H hidden units, C classes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.registry import register_model
from impl.techniques.graph import GCNLayer

KARATE_NODES = 34
KARATE_CLUBS = ("Mr. Hi", "Officer")  # networkx's ``club`` attribute -> labels 0 and 1


@dataclass(frozen=True)
class GCNConfig:
    in_features: int = 16  # F (the karate club: one-hot node ids, F = N = 34)
    hidden_features: int = 32  # H
    num_classes: int = 4  # C
    dropout: float = 0.0  # between the layers: v1 has none, v2 0.5
    num_nodes: int = 10  # N of the example graphs (v1: 10)
    max_nodes: int = 16  # the largest N the example graphs take (``dynamic_dims``)
    edge_prob: float = 0.3  # random example graphs: P(edge j -> i) for i != j


V1 = GCNConfig()  # 002 Q43 v1: 16 -> 32 -> 4 on 10 nodes
# 676 parameters: the check size is the curriculum's. Smaller ones cannot fit the overfitting
# check's random labels: a GCN gives equal outputs to nodes whose in-neighbourhoods (with the
# node itself) coincide, and such twins are common in small random graphs.
SIZES_2LAYER = {"tiny": V1, "full": V1}
KARATE = GCNConfig(
    in_features=KARATE_NODES,
    hidden_features=16,
    num_classes=len(KARATE_CLUBS),
    dropout=0.5,
    num_nodes=KARATE_NODES,
    max_nodes=KARATE_NODES,
)
SIZES_KARATE = {"tiny": KARATE, "full": KARATE}  # 594 parameters: the check size is the real one


class GCN(nn.Module):
    """GCNLayer(F, H) -> ReLU -> Dropout -> GCNLayer(H, C) -> log_softmax over the classes.

    Shape: x (B, N, F), adj (B, N, N) -> log-probabilities (B, N, C);
    or one graph: x (N, F), edge_index (2, E) or adj (N, N) -> (N, C)
    """

    def __init__(self, cfg: GCNConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        self.conv1 = GCNLayer(cfg.in_features, cfg.hidden_features)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = GCNLayer(cfg.hidden_features, cfg.num_classes)

    def forward(self, x: Tensor, graph: Tensor) -> Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.in_features:
            raise ValueError(
                f"expected node features (B, N, {self.in_features}) or (N, {self.in_features}), "
                f"got {list(x.shape)}"
            )
        dense = graph.is_floating_point() or graph.dtype == torch.bool
        nodes = x.shape[-2]
        if dense and graph.shape != (*x.shape[:-2], nodes, nodes):
            raise ValueError(
                f"expected an adjacency {[*x.shape[:-2], nodes, nodes]} for node features "
                f"{list(x.shape)}, got {list(graph.shape)}"
            )
        if not dense and (x.dim() != 2 or graph.dim() != 2 or graph.shape[0] != 2):
            raise ValueError(
                f"an edge_index (2, E) goes with one graph's (N, {self.in_features}) features, "
                f"got x {list(x.shape)} and edge_index {list(graph.shape)}"
            )
        h = self.dropout(F.relu(self.conv1(x, graph)))  # (B, N, H)
        return F.log_softmax(self.conv2(h, graph), dim=-1)  # (B, N, C)


@gradcheck_module(
    lambda: DenseGCNReference(GCN(GCNConfig(in_features=3, hidden_features=4, num_classes=2))),
    lambda g: (randn(g, 2, 4, 3), torch.rand(2, 4, 4, generator=g) < 0.4),
)
class DenseGCNReference(nn.Module):
    """The same network on ``torch_geometric.nn.DenseGCNConv`` (PyG's dense GCN layer, whose
    adjacency is [target, source] too), for ``ModelSpec.reference``.

    Shape: x (B, N, F), adj (B, N, N) -> (B, N, C)
    """

    def __init__(self, model: GCN) -> None:
        super().__init__()
        from torch_geometric.nn import DenseGCNConv  # imported only where a check needs it

        self.convs = nn.ModuleList()
        for ours in (model.conv1, model.conv2):
            conv = DenseGCNConv(ours.in_features, ours.out_features)
            with torch.no_grad():
                conv.lin.weight.copy_(ours.weight)
                conv.bias.copy_(ours.bias)
            self.convs.append(conv)
        self.dropout = nn.Dropout(model.dropout.p)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        adj = adj.to(x.dtype)  # (B, N, N); DenseGCNConv sets the diagonal to 1 itself
        h = self.dropout(F.relu(self.convs[0](x, adj)))
        return F.log_softmax(self.convs[1](h, adj), dim=-1)


@gradcheck_function(
    lambda g: (randn(g, 2, 3, 4), torch.randint(0, 4, (2, 3), generator=g)), wrt=(0,)
)
def node_nll_loss(log_probs: Tensor, labels: Tensor) -> Tensor:
    """Mean negative log-likelihood over every node of every graph (the seed's ``nll_loss``).

    Shape: (B, N, C), (B, N) -> ()
    """
    return F.nll_loss(log_probs.flatten(0, -2), labels.flatten())


def node_logits_shape(cfg: GCNConfig, batch_size: int, **dims: int) -> tuple[int, int, int]:
    return (batch_size, dims.get("num_nodes", cfg.num_nodes), cfg.num_classes)


def _node_count(cfg: GCNConfig) -> dict[str, tuple[int, int]]:
    return {"num_nodes": (1, cfg.max_nodes)}


def _random_graphs(
    cfg: GCNConfig, batch_size: int, generator: torch.Generator, num_nodes: int | None = None
) -> tuple[Tensor, Tensor]:
    """B random directed graphs: features N(0, 1) (B, N, F), adjacency (B, N, N) bool."""
    n = cfg.num_nodes if num_nodes is None else num_nodes
    x = torch.randn(batch_size, n, cfg.in_features, generator=generator)  # (B, N, F)
    adj = torch.rand(batch_size, n, n, generator=generator) < cfg.edge_prob  # (B, N, N)
    return x, adj & ~torch.eye(n, dtype=torch.bool)  # no self-loops: the layer adds them


@functools.cache
def karate_club() -> tuple[Tensor, Tensor]:
    """Zachary's karate club from networkx: adjacency (34, 34) bool (symmetric, 78 edges, no
    weights: networkx's ``weight`` counts interactions, PyG's ``KarateClub`` ignores them too)
    and the two-club labels (34,), Mr. Hi 0 and Officer 1."""
    import networkx as nx

    graph = nx.karate_club_graph()
    adj = torch.zeros(KARATE_NODES, KARATE_NODES, dtype=torch.bool)
    for i, j in graph.edges():
        adj[i, j] = adj[j, i] = True
    labels = torch.tensor([KARATE_CLUBS.index(graph.nodes[i]["club"]) for i in graph.nodes])
    return adj, labels


def _karate_copies(
    cfg: GCNConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """B copies of the karate club, each with its nodes relabelled by a random permutation p:
    node i of a copy is the club's member p[i], features one-hot of p[i] (B, 34, 34), adjacency
    adj[p][:, p] (B, 34, 34)."""
    adj, _ = karate_club()
    perms = [torch.randperm(KARATE_NODES, generator=generator) for _ in range(batch_size)]
    x = torch.stack([torch.eye(KARATE_NODES)[p] for p in perms])  # (B, N, N): one-hot ids
    return x, torch.stack([adj[p][:, p] for p in perms])


@no_gradcheck("integer labels looked up from the one-hot ids: a target maker, not differentiable")
def karate_club_targets(
    cfg: Any, inputs: tuple[Tensor, ...], shape: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """The club of each node of each copy, found from its one-hot id: (B, 34) in {0, 1}."""
    _, labels = karate_club()
    return labels[inputs[0].argmax(dim=-1).cpu()]  # (B, N), on the CPU as the labels are


COMMON: dict[str, Any] = {
    "family": "graph",
    "curriculum": "002 Q43",
    "output_shape": node_logits_shape,
    "loss": node_nll_loss,
    "reference": DenseGCNReference,
}


@register_model(
    sizes=SIZES_2LAYER,
    example_inputs=_random_graphs,
    dynamic_dims=_node_count,
    full_params=676,  # catalog: 16*32 + 32 + 32*4 + 4, GCNConv's count
    **COMMON,
)
def gcn_2layer(cfg: GCNConfig) -> GCN:
    """Two hand-written GCN layers on random graphs (002 Q43 v1), node log-probabilities."""
    return GCN(cfg)


@register_model(
    sizes=SIZES_KARATE,
    example_inputs=_karate_copies,
    targets=karate_club_targets,
    full_params=594,  # 34*16 + 16 + 16*2 + 2
    **COMMON,
)
def gcn_karate(cfg: GCNConfig) -> GCN:
    """Two GCN layers with dropout on the karate club's two clubs (002 Q43 v2, Cora replaced)."""
    return GCN(cfg)
