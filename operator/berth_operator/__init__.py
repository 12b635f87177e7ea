"""Berth's Kubernetes operator: ModelDeployment → server pods, Services and a traffic split.

Layers, each in its own module: `spec` (parse a resource), `render` (desired children), `rollout`
(the canary state machine), `kubeapi` (server-side apply), `handlers` (kopf glue). Only `handlers`,
`kubeapi` and `plugin` talk to the API server; the rest are pure functions.
"""
