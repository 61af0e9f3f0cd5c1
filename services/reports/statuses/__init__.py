"""Commit statuses on GitHub, GitLab and Gitea/Forgejo: ``domain`` (plain values: providers,
repositories from links, states, texts, reading answers), ``repo`` (all SQL), ``integrations``
(create, list, delete; tokens sealed), ``posting`` (what to post, recorded in the transaction
of the change), ``delivery`` (the durable sender)."""
