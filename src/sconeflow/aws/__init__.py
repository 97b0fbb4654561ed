"""Scale-out: the workspace's data, model, functions and state machine deployed to AWS.

* `template`: the CloudFormation template (plain CloudFormation; why in its docstring);
* `bundle`: `sconeflow aws synth`, which writes the template, one zip per Lambda function,
  the serving image's Dockerfile, a CreateTrainingJob request and a diagram;
* `training_request`: that request, for SageMaker's built-in image-classification algorithm;
* `diagram`: the picture of the template;
* `deploy`: `sconeflow aws deploy / status / destroy` through boto3.
"""
