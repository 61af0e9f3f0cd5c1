"""Reports: Happo reports, comparisons, jobs, ignored diffs, subscriptions and review pages."""
