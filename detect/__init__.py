"""Detection: rules, learned baseline, process/timing checks and anomaly models -> alert events.

The rule layer (this package's `ruleset`, `engine`, `alerts`, `lint`, `rule_examples`, `cli`):

    from detect.ruleset import load_rules          # rules/**/*.yml -> RuleSet (InvalidRule on errors)
    from detect.engine import RuleEngine, evaluate  # streaming matcher; pure per-event evaluation
    alerts = RuleEngine(load_rules()).run(events)   # alert Events (kind "alert"), see detect/alerts.py

Rule format, operators and the rule list: docs/rules.md.
"""
