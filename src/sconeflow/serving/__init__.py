"""Model serving: a SageMaker-compatible endpoint on onnxruntime, never torch.

    model.py      read and check model.tar.gz / a model folder (model.onnx + model.json)
    inference.py  preprocess (bytes -> normalised NCHW), Predictor, greedy micro-batching
    app.py        the HTTP routes (/ping, /invocations, /endpoints/{name}/invocations, /metrics)
    capture.py    data capture in Model Monitor's JSONL format, off the request path
    metrics.py    CloudWatch-named invocation metrics, summed over workers, Prometheus text
    server.py     uvicorn + httptools + uvloop, one process or a pre-fork master
    endpoints.py  endpoints as resources: deploy, list, describe, delete (db rows, processes)
    client.py     invoke an endpoint from Python (stdlib only)

Nothing is imported here, so `import sconeflow.serving.inference` stays light.
"""
