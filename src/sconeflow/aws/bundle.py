"""`sconeflow aws synth`: write the deployable bundle from the workspace.

    <out>/template.json          CloudFormation (see template.py)
    <out>/functions/<name>.zip   one zip per Lambda function: its handler and what it imports
    <out>/image/Dockerfile       the SageMaker serving image (serving dependencies, no torch)
    <out>/image/requirements.txt those dependencies, pinned to the versions tested here
    <out>/image/sconeflow/       the package the image runs (`sconeflow serve`)
    <out>/training_job.json      a CreateTrainingJob request for SageMaker's built-in
                                 image-classification algorithm on the staged .lst channels
    <out>/diagram.png            what the template deploys, drawn from the template
    <out>/bundle.json            what was built from which workspace objects

Nothing here calls AWS; deploy.py uploads and deploys the bundle.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sconeflow
from sconeflow.aws.template import FUNCTIONS, StackSpec, build_template
from sconeflow.aws.training_request import DEFAULT_TRAINING, TrainingOptions, training_job_request
from sconeflow.config import Settings
from sconeflow.errors import AwsError, SconeflowError
from sconeflow.executions.definitions import packaged_text
from sconeflow.functions.config import DEFAULT_THRESHOLD
from sconeflow.functions.package import HANDLERS

PACKAGE_ROOT = Path(sconeflow.__file__).parent
# What the serving image leaves out: training needs torch, which the image never installs.
_IMAGE_EXCLUDES = ("training", "aws", "__pycache__")
DOCKERFILE = """\
# The SageMaker serving image: `docker run IMAGE serve` runs `python -m sconeflow serve`,
# with the model unpacked under /opt/ml/model and SAGEMAKER_* settings from the endpoint.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PYTHONPATH=/opt/program
WORKDIR /opt/program
COPY requirements.txt /opt/program/requirements.txt
RUN pip install --no-cache-dir -r /opt/program/requirements.txt
COPY sconeflow /opt/program/sconeflow
EXPOSE 8080
ENTRYPOINT ["python", "-m", "sconeflow"]
CMD ["serve"]
"""


@dataclass(frozen=True)
class Bundle:
    out: Path
    template: Path
    zips: dict[str, Path]
    image: Path
    training_job: Path
    diagram: Path
    spec: StackSpec


def module_closure(module: str) -> list[Path]:
    """The sconeflow source files `module` needs: itself, every sconeflow module it imports
    (at any depth), and the packages' `__init__.py` on the way. Read from the source with
    `ast`, so nothing is imported to find out."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the packages above it run first
            path = _source_of(".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imports_of(path, ".".join(parts[:depth])))
    return sorted(seen)


def _source_of(module: str) -> Path | None:
    rel = Path(*module.split(".")[1:])
    for candidate in (PACKAGE_ROOT / rel / "__init__.py", (PACKAGE_ROOT / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not those inside functions (lazy
    imports on paths a handler never takes, such as make_handlers') nor under
    `if TYPE_CHECKING:`. The zip test runs each handler from its zip alone, so a lazy
    import the handler does need would show there."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _import_nodes(child))
        else:
            yield from _import_nodes(node)


def _imports_of(path: Path, module: str) -> list[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "sconeflow"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "sconeflow":
                continue
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
    return found


def build_function_zip(function: str) -> bytes:
    """The deployment zip of one function: the handler module's closure, reproducibly
    (fixed timestamps, sorted), so its CodeSha256 changes only when its code does."""
    module = HANDLERS[function].rsplit(".", 1)[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in module_closure(module):
            arcname = "sconeflow/" + path.relative_to(PACKAGE_ROOT).as_posix()
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def serving_requirements() -> list[str]:
    """sconeflow's own dependencies (no extras: no torch), pinned to what is installed."""
    from packaging.requirements import Requirement

    pins = []
    for text in importlib.metadata.requires("sconeflow") or []:
        req = Requirement(text)
        if req.marker is not None and "extra" in str(req.marker):
            continue
        pins.append(f"{req.name}=={importlib.metadata.version(req.name)}")
    return sorted(pins, key=str.lower)


def _write_image(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    (folder / "requirements.txt").write_text("\n".join(serving_requirements()) + "\n")
    target = folder / "sconeflow"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        PACKAGE_ROOT, target,
        ignore=lambda d, names: [n for n in names if n in _IMAGE_EXCLUDES or n.endswith(".pyc")],
    )  # fmt: skip
    return folder / "Dockerfile"


def synth(
    out: Path,
    *,
    model_key: str,
    hyperparameters: dict[str, str],
    endpoint_name: str = "scones-endpoint",
    threshold: float = DEFAULT_THRESHOLD,
    capture_percentage: int = 100,
    num_training_samples: int | None = None,
    definition: str = "stepfunction",
    training: TrainingOptions = DEFAULT_TRAINING,
) -> Bundle:
    """Write the bundle into `out` (created; files there are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    zips: dict[str, Path] = {}
    code_keys: dict[str, str] = {}
    (out / "functions").mkdir(exist_ok=True)
    for fn in FUNCTIONS:
        data = build_function_zip(fn)
        path = out / "functions" / f"{fn}.zip"
        path.write_bytes(data)
        zips[fn] = path
        # Content-addressed, so a changed zip is a changed key and CloudFormation updates it.
        code_keys[fn] = f"lambda/{fn}-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    spec = StackSpec(
        definition=packaged_text(definition),
        endpoint_name=endpoint_name,
        model_key=model_key,
        code_keys=code_keys,
        threshold=threshold,
        capture_percentage=capture_percentage,
        monitoring_schedule=f"{endpoint_name}-monitor",
    )
    template = build_template(spec)
    template_path = out / "template.json"
    template_path.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    dockerfile = _write_image(out / "image")
    request = training_job_request(
        hyperparameters, num_training_samples=num_training_samples,
        instance_type=training.instance_type, max_runtime_s=training.max_runtime_s,
    )  # fmt: skip
    training_path = out / "training_job.json"
    training_path.write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
    from sconeflow.aws.diagram import render_diagram

    diagram = out / "diagram.png"
    diagram.write_bytes(render_diagram(template))
    manifest: dict[str, Any] = {
        "model_key": model_key,
        "endpoint_name": endpoint_name,
        "code_keys": code_keys,
        "threshold": threshold,
        "capture_percentage": capture_percentage,
        "definition": definition,
        "sconeflow_version": sconeflow.__version__,
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Bundle(out, template_path, zips, dockerfile, training_path, diagram, spec)


def load_manifest(out: Path) -> dict[str, Any]:
    """What `synth` recorded in `out/bundle.json`."""
    try:
        doc: dict[str, Any] = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AwsError(
            f"{out} holds no bundle ({err}); write one with `sconeflow aws synth --out {out}`"
        ) from err
    return doc


def synth_workspace(
    settings: Settings,
    out: Path,
    *,
    model: str | None = None,
    endpoint_name: str = "scones-endpoint",
    threshold: float | str = DEFAULT_THRESHOLD,
    training: TrainingOptions = DEFAULT_TRAINING,
) -> Bundle:
    """`synth` with what the workspace holds: the model of training job `model` (default:
    the newest Completed one), its hyperparameters, the staged training set's size, and the
    capture sampling of the local endpoint of that name, if there is one.

    `threshold="model"`: the threshold stored in that model's model.json (`evaluate
    --target-accuracy ... --save`), written into the template as a number, so the deployed
    function needs no read of the model at cold start and the template shows the value."""
    from sconeflow.serving.endpoints import list_endpoints
    from sconeflow.store import open_store
    from sconeflow.training.job import artifact_key, list_jobs

    jobs = [j for j in list_jobs(settings) if j.status == "Completed"]
    job = next((j for j in jobs if model in (None, j.name)), None)
    if job is None:
        raise AwsError(
            f"no Completed training job {model or ''} in {settings.home}; train one with "
            "`sconeflow train` (or run `sconeflow pipeline`), then synth again"
        )
    if threshold == "model":
        from sconeflow.evaluation import model_selective

        try:
            threshold = float(model_selective(settings, job.name)["threshold"])
        except SconeflowError as err:
            raise AwsError(f"--threshold model: {err}") from err
    elif isinstance(threshold, str):
        raise AwsError(f"--threshold: got {threshold!r}, expected a number or 'model'")
    store = open_store(settings)
    try:
        lst = store.get(settings.bucket, "data/train.lst").decode("utf-8")
    except SconeflowError as err:
        raise AwsError(f"no staged data/train.lst ({err}); run `sconeflow stage` first") from err
    capture = 100
    for ep in list_endpoints(settings):
        if ep.name == endpoint_name:
            capture = int(ep.capture.sampling_percentage)
    return synth(
        out, model_key=artifact_key(job.name), hyperparameters=job.hyperparameters,
        endpoint_name=endpoint_name, threshold=threshold, capture_percentage=capture,
        num_training_samples=sum(1 for line in lst.splitlines() if line.strip()),
        training=training,
    )  # fmt: skip
