"""`launch bench`: distributed Caliper runs and what they measured.

    report.py      Caliper's report.html and manager log -> per-round numbers
    prometheus.py  the monitor's Prometheus (and Pushgateway) over HTTP, and the PromQL used
    signals.py     Prometheus answers for one round window -> the signals the verdict reads
    verdict.py     thresholds + signals + numbers + failures -> failing / load-generator-bound /
                   inconclusive / fabric-bound / headroom
    failures.py    why transactions failed: the workers' error messages grouped by reason
    ledger.py      the round's channel's valid transactions against Caliper's succeeded count
    workloads.py   whether a workload module only reads (evaluates), from its source
    summarize.py   one run's numbers, signals, ledger check and verdicts -> its Summary
    results.py     the results bundle (summary.json schema, atomic write, list/show)
    plots.py       PNG plots and index.html
    panels.py      every Grafana panel's PromQL against a Prometheus (e2e helper)
    door.py        how bench reaches a host (SshDoor; unit tests give a fake one)
    lab.py         the launched environment as bench sees it, checked up and bootstrapped
    control.py     the Caliper workers and manager on the worker VMs (start, stop, journal)
    watch.py       the manager's journal polled to the end, progress lines, timeouts
    gather.py      what a run left (logs, report, Prometheus answers, snapshot, versions)
    collect.py     gathered parts -> the results bundle on disk; a bundle judged again
    run.py         one run, in order: check, clean, workers, manager, watch, gather, bundle
"""
