"""Model serving: a SageMaker-compatible endpoint on onnxruntime, never torch.

    model.py      read and check model.tar.gz / a model folder (model.onnx + model.json)
    inference.py  preprocess (bytes -> normalised NCHW), Predictor, greedy micro-batching
    app.py        the HTTP routes (/ping, /invocations, /endpoints/{name}/invocations, /metrics)
    capture.py    data capture in Model Monitor's JSONL format, off the request path
    spool.py      the capture buffer: a byte-bounded ring per worker in shared memory
    metrics.py    CloudWatch-named invocation metrics, summed over workers, Prometheus text
    connections.py the HTTP protocol with deadlines for slow clients, limits on headers
    server.py     uvicorn + httptools + uvloop under a pre-fork master
    supervisor.py the master: starts, replaces and stops the workers
    endpoints.py  endpoints as resources: deploy, list, describe, delete (db rows, processes)
    client.py     invoke an endpoint from Python (stdlib only)

Nothing is imported here, so `import sconeflow.serving.inference` stays light.
"""
