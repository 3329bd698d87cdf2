"""Checks of ``impl.techniques.graph`` (technique ``gcn_propagation``, catalog §2) and of the GCN
models built on it, ``gcn_2layer`` and ``gcn_karate`` (``impl.models.gcn``, curriculum 002 Q43).

The layer equals ``torch_geometric.nn.GCNConv`` with the same weights on random directed graphs
with isolated nodes and self-loops already present, in both forms (dense adjacency and
``edge_index``), and D^-1/2 (A + I) D^-1/2 X W + b computed literally on an undirected graph
without loops; relabelling the nodes permutes the output. The details GCNConv's equality rests on
each get a check that a plausible hand-written version fails: a literal A + I doubles an existing
self-loop, and ``to_dense_adj``'s [source, target] orientation is the transpose of the one the
formula needs on the curriculum's own directed graph.

The curriculum's code, 002 Q43 v1 and v2, sits beside ours: v1 as written raises NameError (no
``import torch``, no ``nn``); with its imports supplied, both versions compute our models'
function once the weights are copied. v2 trains on Cora, a download; ours trains on the karate
club with v2's recipe.
"""

from __future__ import annotations

import networkx as nx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_dense_adj

from impl import get_spec
from impl.models.gcn import GCN, KARATE, karate_club
from impl.techniques.graph import (
    GCNLayer,
    edge_index_to_adjacency,
    gcn_norm_dense,
    gcn_norm_edges,
)

TOL = {"rtol": 1e-5, "atol": 1e-5}  # float32: the same sums in a different order

# ---------------------------------------------------------------------------------------------
# 002 Q43, as written. v1 lacks its imports; v2's model class is below with v1's imports.

SEED_Q43_V1 = """
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

class GCN(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim):
        super(GCN, self).__init__()
        self.conv1 = GCNConv(input_dim, hidden_dim)
        self.conv2 = GCNConv(hidden_dim, output_dim)

    def forward(self, x, edge_index):
        x = F.relu(self.conv1(x, edge_index))
        x = self.conv2(x, edge_index)
        return F.log_softmax(x, dim=1)

# 測試圖神經網絡
input_dim, hidden_dim, output_dim = 16, 32, 4
model = GCN(input_dim, hidden_dim, output_dim)
x = torch.randn(10, input_dim)  # 10 個節點的特徵
edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])  # 三條邊
output = model(x, edge_index)
print("Output Shape:", output.shape)
"""


class CurriculumGCNQ43v1(nn.Module):
    """002 Q43 v1's class (the snippet above), with the ``torch`` and ``nn`` it uses imported."""

    def __init__(self, input_dim, hidden_dim, output_dim):
        super(CurriculumGCNQ43v1, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.conv1 = GCNConv(input_dim, hidden_dim)
        self.conv2 = GCNConv(hidden_dim, output_dim)

    def forward(self, x, edge_index):
        x = F.relu(self.conv1(x, edge_index))
        x = self.conv2(x, edge_index)
        return F.log_softmax(x, dim=1)


class CurriculumGNNQ43v2(nn.Module):
    """002 Q43 v2 ("perplexity"): GCNConv -> ReLU -> dropout 0.5 -> GCNConv -> log_softmax."""

    def __init__(self, input_dim, hidden_dim, output_dim, dropout=0.5):
        super(CurriculumGNNQ43v2, self).__init__()  # noqa: UP008
        # 第一層圖卷積
        self.conv1 = GCNConv(input_dim, hidden_dim)
        # 第二層圖卷積
        self.conv2 = GCNConv(hidden_dim, output_dim)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = self.conv1(x, edge_index)
        x = F.relu(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.conv2(x, edge_index)
        return F.log_softmax(x, dim=1)


def copy_into_ours(seed_model: nn.Module, ours: GCN) -> GCN:
    """Our GCN with the seed's GCNConv weights: ``lin.weight`` is our ``weight``, same layout."""
    with torch.no_grad():
        for theirs, mine in ((seed_model.conv1, ours.conv1), (seed_model.conv2, ours.conv2)):
            mine.weight.copy_(theirs.lin.weight)
            mine.bias.copy_(theirs.bias)
    return ours


# ---------------------------------------------------------------------------------------------
# Random graphs: any directed edge set on N nodes, self-loops included, isolated nodes likely.


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(edge_index (2, E), x (N, 3)): a random set of directed edges, loops allowed."""
    n = draw(st.integers(1, max_nodes), label="nodes")
    node = st.integers(0, n - 1)
    edges = sorted(draw(st.sets(st.tuples(node, node), max_size=3 * n), label="edges"))
    edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T  # (2, E)
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return edge_index, x


def pyg_and_ours(in_features: int, out_features: int, seed: int = 0) -> tuple[GCNConv, GCNLayer]:
    """A GCNConv and our layer with the same weights and a non-zero bias."""
    torch.manual_seed(seed)
    conv, ours = GCNConv(in_features, out_features), GCNLayer(in_features, out_features)
    with torch.no_grad():
        ours.weight.copy_(conv.lin.weight)
        conv.bias.copy_(torch.randn(out_features))
        ours.bias.copy_(conv.bias)
    return conv, ours


def with_loops(edge_index: torch.Tensor) -> bool:
    return bool((edge_index[0] == edge_index[1]).any())


@given(graph=graphs())
def test_gcn_propagation_dense_layer_equals_pyg_gcnconv(graph) -> None:
    """Dense form, adjacency from ``edge_index_to_adjacency``: GCNConv's output on any directed
    graph, with isolated nodes and self-loops already present."""
    edge_index, x = graph
    conv, ours = pyg_and_ours(3, 2)
    adj = edge_index_to_adjacency(edge_index, x.shape[0])  # (N, N)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, adj), conv(x, edge_index), **TOL)
        torch.testing.assert_close(ours(x, adj.bool()), conv(x, edge_index), **TOL)


@given(graph=graphs(), weighted=st.booleans())
def test_gcn_propagation_edge_index_layer_equals_pyg_gcnconv(graph, weighted: bool) -> None:
    """Message-passing form, weighted or not: GCNConv's output, edge weights included (an
    existing self-loop keeps its weight, a node without one gets weight 1)."""
    edge_index, x = graph
    weight = torch.rand(edge_index.shape[1]) + 0.5 if weighted else None
    conv, ours = pyg_and_ours(3, 2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, edge_index, weight), conv(x, edge_index, weight), **TOL)
        dense = edge_index_to_adjacency(edge_index, x.shape[0], weight)
        torch.testing.assert_close(ours(x, dense), conv(x, edge_index, weight), **TOL)


@given(graph=graphs())
def test_gcn_propagation_normalised_edge_weights_equal_pygs_gcn_norm(graph) -> None:
    """``gcn_norm_edges`` gives the matrix Â of PyG's ``gcn_norm`` (edge order aside), and so does
    ``gcn_norm_dense`` of the dense adjacency."""
    edge_index, x = graph
    n = x.shape[0]
    pyg_edges, pyg_weights = gcn_norm(edge_index, None, n)
    theirs = edge_index_to_adjacency(pyg_edges, n, pyg_weights)  # (N, N)
    edges, weights = gcn_norm_edges(edge_index, n)
    torch.testing.assert_close(edge_index_to_adjacency(edges, n, weights), theirs, **TOL)
    dense = gcn_norm_dense(edge_index_to_adjacency(edge_index, n))
    torch.testing.assert_close(dense, theirs, **TOL)


@st.composite
def undirected_graphs(draw: st.DrawFn, max_nodes: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (N, N) symmetric 0/1 with a zero diagonal, x (N, 3))."""
    n = draw(st.integers(1, max_nodes), label="nodes")
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)), label="edges")
    adj = torch.zeros(n, n)
    for (i, j), keep in zip(pairs, chosen, strict=True):
        adj[i, j] = adj[j, i] = float(keep)
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    return adj, torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))


@given(graph=undirected_graphs())
def test_gcn_propagation_is_the_closed_form_on_an_undirected_graph(graph) -> None:
    """D^-1/2 (A + I) D^-1/2 X W + b, written with ``torch.diag`` from its definition (Kipf and
    Welling), where A + I is exact: symmetric A, no loops. Both forms of the layer give it."""
    adj, x = graph
    _, ours = pyg_and_ours(3, 2)
    a_tilde = adj + torch.eye(adj.shape[0])
    d_inv_sqrt = torch.diag(a_tilde.sum(dim=1) ** -0.5)
    with torch.no_grad():
        expected = d_inv_sqrt @ a_tilde @ d_inv_sqrt @ x @ ours.weight.T + ours.bias
        torch.testing.assert_close(ours(x, adj), expected, **TOL)
        torch.testing.assert_close(ours(x, adj.nonzero().T), expected, **TOL)


def test_gcn_propagation_keeps_a_self_loop_already_present_where_a_literal_a_plus_i_doubles_it():
    """A triangle with a loop on node 0: GCNConv adds only the missing loops, so node 0's loop
    keeps weight 1 (degree 3). A literal A + I gives it weight 2 (degree 4) and a different
    output; ours is GCNConv's."""
    edge_index = torch.tensor([[0, 0, 1, 1, 2, 2, 0], [1, 2, 0, 2, 0, 1, 0]])  # last: the loop
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    conv, ours = pyg_and_ours(3, 2)
    a = to_dense_adj(edge_index)[0]  # symmetric, so the orientation does not matter here
    a_plus_i = a + torch.eye(3)
    assert a_plus_i[0, 0] == 2
    d = torch.diag(a_plus_i.sum(dim=1) ** -0.5)
    with torch.no_grad():
        expected = conv(x, edge_index)
        literal = d @ a_plus_i @ d @ x @ ours.weight.T + ours.bias
        torch.testing.assert_close(ours(x, edge_index), expected, **TOL)
        torch.testing.assert_close(ours(x, a), expected, **TOL)
        assert (literal - expected).abs().max() > 1e-3


def test_gcn_propagation_to_dense_adj_is_the_transpose_of_what_the_formula_needs():
    """The curriculum's directed 3-cycle 0->1->2->0 on 10 nodes (002 Q43 v1): GCNConv sends
    messages along the edges, so node 1 hears node 0. ``to_dense_adj`` is [source, target]; put
    into D^-1/2 (A + I) D^-1/2 X it makes node 1 hear node 2 instead. ``edge_index_to_adjacency``
    is [target, source] and matches."""
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    conv, ours = pyg_and_ours(3, 2)
    with torch.no_grad():
        expected = conv(x, edge_index)
        torch.testing.assert_close(ours(x, edge_index_to_adjacency(edge_index, 10)), expected)
        transposed = ours(x, to_dense_adj(edge_index, max_num_nodes=10)[0])
    assert (transposed[:3] - expected[:3]).abs().max() > 1e-3  # the cycle's nodes differ
    torch.testing.assert_close(transposed[3:], expected[3:])  # isolated nodes: x W + b alike


def test_gcn_propagation_an_isolated_node_outputs_x_w_plus_b():
    """Degree 1 (its own loop only): Â_ii = 1 and nothing else reaches it."""
    edge_index = torch.tensor([[0, 1], [1, 0]])  # node 2 isolated
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    _, ours = pyg_and_ours(3, 2)
    with torch.no_grad():
        for graph in (edge_index, edge_index_to_adjacency(edge_index, 3)):
            torch.testing.assert_close(ours(x, graph)[2], x[2] @ ours.weight.T + ours.bias)


@given(graph=graphs(), data=st.data())
def test_gcn_propagation_relabelling_the_nodes_permutes_the_output(graph, data) -> None:
    """Node i of the relabelled graph is old node perm[i]: features x[perm], adjacency
    adj[perm][:, perm], edges renamed by the inverse permutation; the output is out[perm]."""
    edge_index, x = graph
    n = x.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(n)), label="perm"))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    _, ours = pyg_and_ours(3, 2)
    adj = edge_index_to_adjacency(edge_index, n)
    with torch.no_grad():
        by_edges, dense = ours(x, edge_index), ours(x, adj)  # each form against itself
        torch.testing.assert_close(ours(x[perm], inverse[edge_index]), by_edges[perm], **TOL)
        torch.testing.assert_close(ours(x[perm], adj[perm][:, perm]), dense[perm], **TOL)


@pytest.mark.parametrize("name", ["gcn_2layer", "gcn_karate"])
@settings(max_examples=10)
@given(data=st.data())
def test_gcn_propagation_gcn_models_relabelling_nodes_permutes_the_output(name, data) -> None:
    """The registered models, batched (B, N, N): one relabelling of every graph's nodes permutes
    each graph's output rows (the registry's ``permutation_equivariant`` permutes dim 1 of every
    input, which for an adjacency would reorder its rows only, so the models do not declare it)."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    x, adj = spec.inputs(cfg, 3, seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
    perm = torch.tensor(data.draw(st.permutations(range(x.shape[1])), label="perm"))
    torch.manual_seed(0)
    model = spec.create("tiny").eval()
    with torch.no_grad():
        out = model(x, adj)
        relabelled = model(x[:, perm], adj[:, perm][:, :, perm])
    torch.testing.assert_close(relabelled, out[:, perm], **TOL)


# ---------------------------------------------------------------------------------------------
# The curriculum's models beside ours


def test_gcn_propagation_gcn_2layer_seed_q43_v1_as_written_raises_name_error():
    """002 Q43 v1 runs ``class GCN(nn.Module)`` without importing ``nn`` (or ``torch``)."""
    with pytest.raises(NameError, match="name 'nn' is not defined"):
        exec(SEED_Q43_V1, {})


def test_gcn_propagation_gcn_2layer_equals_the_seeds_q43_v1_model():
    """With its imports supplied, v1's GCNConv model on its own input (10 nodes, 16 features, the
    directed 3-cycle) is ``gcn_2layer`` at full size with the same weights: (10, 4), 676
    parameters (the catalog's count of the seed's class), batched or not."""
    torch.manual_seed(0)
    seed_model = CurriculumGCNQ43v1(16, 32, 4)
    ours = copy_into_ours(seed_model, get_spec("gcn_2layer").create("full"))
    x = torch.randn(10, 16)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    adj = edge_index_to_adjacency(edge_index, 10).bool()
    with torch.no_grad():
        expected = seed_model(x, edge_index)
        assert expected.shape == (10, 4)
        torch.testing.assert_close(ours(x, edge_index), expected, **TOL)
        torch.testing.assert_close(ours(x[None], adj[None])[0], expected, **TOL)
    params = sum(p.numel() for p in seed_model.parameters())
    assert params == sum(p.numel() for p in ours.parameters()) == get_spec("gcn_2layer").full_params


def karate_edge_index() -> torch.Tensor:
    return KarateClub()[0].edge_index  # (2, 156): both directions of the 78 edges


def test_gcn_propagation_gcn_karate_equals_the_seeds_q43_v2_model_on_the_karate_club():
    """v2's model (dropout 0.5) with Cora's sizes replaced by the karate club's (34 one-hot
    features, 16 hidden, 2 clubs) is ``gcn_karate`` with the same weights: in eval mode, and in
    training mode under the same RNG state (``F.dropout`` and ``nn.Dropout`` draw one mask)."""
    torch.manual_seed(0)
    seed_model = CurriculumGNNQ43v2(34, 16, 2)
    ours = copy_into_ours(seed_model, GCN(KARATE))
    x, edge_index = torch.eye(34), karate_edge_index()
    with torch.no_grad():
        torch.testing.assert_close(
            ours.eval()(x, edge_index), seed_model.eval()(x, edge_index), **TOL
        )
        torch.manual_seed(1)
        expected = seed_model.train()(x, edge_index)
        torch.manual_seed(1)
        torch.testing.assert_close(ours.train()(x, edge_index), expected, **TOL)
    assert sum(p.numel() for p in seed_model.parameters()) == get_spec("gcn_karate").full_params


def test_gcn_propagation_gcn_karate_data_is_the_karate_club_of_pyg_and_networkx():
    """Catalog D-cora's stand-in: 34 nodes, 78 undirected edges, two clubs of 17 (networkx's
    ``club``; Mr. Hi leads from node 0, the Officer from node 33); the adjacency is PyG's
    ``KarateClub``'s, whose features are the one-hot identity the model's inputs use."""
    adj, labels = karate_club()
    assert adj.shape == (34, 34) and torch.equal(adj, adj.T) and not adj.diagonal().any()
    assert int(adj.sum()) == 2 * 78 == nx.karate_club_graph().number_of_edges() * 2
    pyg = KarateClub()[0]
    assert torch.equal(to_dense_adj(pyg.edge_index, max_num_nodes=34)[0].bool(), adj)
    assert torch.equal(pyg.x, torch.eye(34))
    assert torch.bincount(labels).tolist() == [17, 17]
    assert labels[0] == 0 and labels[33] == 1
    spec = get_spec("gcn_karate")
    x, copies = spec.inputs(spec.config("tiny"), 2, seed=0)
    targets = spec.make_targets(spec.config("tiny"), (x, copies))
    for b in range(2):  # each copy is the club relabelled; its labels travel with the nodes
        perm = x[b].argmax(dim=-1)
        assert torch.equal(copies[b], adj[perm][:, perm]) and torch.equal(targets[b], labels[perm])


LEADERS = torch.tensor([0, 33])  # the two labelled nodes: Mr. Hi and the Officer


def test_gcn_propagation_gcn_karate_trains_on_the_two_leaders_with_the_seeds_recipe():
    """v2's recipe (Adam lr 0.01, weight decay 5e-4, 200 epochs, ``nll_loss`` on the training
    mask) with the two leaders as the training mask: the training loss falls, and the other 32
    members' clubs are predicted better than chance. Chance is 1/2 (the clubs are 17 and 17);
    over 32 nodes its sd is sqrt(1/4 / 32) = 0.088, so 3 sd above chance is 0.77: 25 of 32."""
    adj, labels = karate_club()
    x = torch.eye(34)
    torch.manual_seed(0)
    model = GCN(KARATE)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    losses = []
    for _ in range(200):
        model.train()
        optimizer.zero_grad()
        loss = F.nll_loss(model(x, adj)[LEADERS], labels[LEADERS])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        predicted = model.eval()(x, adj).argmax(dim=-1)
    rest = torch.ones(34, dtype=torch.bool)
    rest[LEADERS] = False
    assert int((predicted[rest] == labels[rest]).sum()) >= 25
