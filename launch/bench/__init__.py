"""`launch bench`: distributed Caliper runs and what they measured.

    report.py      Caliper's report.html and manager log -> per-round numbers
    prometheus.py  the monitor's Prometheus (and Pushgateway) over HTTP, and the PromQL used
    signals.py     Prometheus answers for one round window -> the signals the verdict reads
    verdict.py     thresholds + signals + numbers -> load-generator-bound / fabric-bound / headroom
    ledger.py      Fabric's own count of valid transactions against Caliper's succeeded count
    results.py     the results bundle (summary.json schema, atomic write, list/show)
    plots.py       PNG plots and index.html
    panels.py      every Grafana panel's PromQL against a Prometheus (e2e helper)
    run.py         the live orchestration over SSH (workers, manager, fetch, bundle)
"""
