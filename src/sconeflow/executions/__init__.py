"""The execution service: state machine executions as workspace resources.

Built on the pure ASL engine in `sconeflow.workflow`, and the only part of sconeflow that
knows how executions are kept:

* `definitions`: packaged or file definitions with `${...Arn}` placeholders filled;
* `records`: execution rows and their history in the workspace db (one reader, one writer);
* `runner`: start, stream, redrive; the local Lambda handlers an execution calls;
* `mapruns`: where a redrive starts, and the Map Run of a Distributed Map it redrives;
* `notify`: EventBridge-shaped failure notifications to a webhook or a command;
* `traffic`: the reference's test-case generator and arrival times;
* `summary`: predicted class and confidence per execution, for people;
* `graph`: a definition or an execution drawn as SVG/PNG.
"""
