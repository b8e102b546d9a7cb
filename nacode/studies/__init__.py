"""The studies' protocols: the only place that knows a paper's (or a chapter's) recipe."""
