"""launch.bench.panels: which dashboard queries a topology must fill."""

from __future__ import annotations

from launch.bench import panels


def test_every_dashboard_query_is_found_and_variables_are_match_all() -> None:
    qs = panels.panel_queries()
    titles = {q.panel for q in qs}
    assert {"BFT leader and view", "Raft leader", "Proposals received / successful / failed",
            "Submitted vs finished TPS vs Fabric committed TPS"} <= titles
    assert not [q for q in qs if "$" in q.expr], "a dashboard variable was left in a query"


def test_bft_and_cluster_panels_are_exempt_only_where_they_cannot_have_data() -> None:
    raft1, raft3, bft4 = (panels.Topology("etcdraft", 1), panels.Topology("etcdraft", 3),
                          panels.Topology("BFT", 4))
    assert panels.not_applicable("BFT leader and view", raft3) == "BFT channels only"
    assert panels.not_applicable("BFT leader and view", bft4) == ""
    assert panels.not_applicable("Cluster comm: send time p99 / egress queue", raft1)
    assert panels.not_applicable("Cluster comm: send time p99 / egress queue", raft3) == ""
    assert panels.not_applicable("Raft leader", raft1) == ""       # never exempt


def test_failed_proposals_do_not_need_a_failure_to_exist() -> None:
    # Fabric creates a failure counter's series on its first failure: the panel derives
    # failures from counters that always exist
    (q,) = [q for q in panels.panel_queries()
            if q.panel == "Proposals received / successful / failed" and q.ref == "C"]
    assert "endorser_proposals_received" in q.expr and "failures" not in q.expr
