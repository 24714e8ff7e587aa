"""Turn an edge network (front + exit head) into ONNX Runtime on-device training artifacts.

The pieces that took finding out (see docs/architecture.md):

* The TorchScript exporter in TRAINING mode keeps BatchNorm's batch statistics; its running-stat
  outputs are dropped by ORT training, so the running statistics would never move. We expose
  them as extra graph outputs (`<param>__next`) and the ORT engine writes them back into the
  checkpoint state after each step. The list of pairs goes into the manifest (`bn_updates`).
* `generate_artifacts` gives every graph output to the loss block; `loss_input_names` narrows
  the cross-entropy loss to the exit logits, the rest come out as additional outputs.
* The generated eval model keeps BatchNorm in training mode and fails to load; we switch it to
  inference mode (running statistics) and drop the now missing outputs.
* ORT's CPU kernel for ReluGrad runs one element at a time on one thread: 58 ms of a 420 ms
  ResNet-18 step, and no faster on two threads (benchmarks/bench_ort_ops.py). The training
  model computes it as Mul(dY, Cast(Greater(Y, 0))) instead, ops ORT vectorises and splits
  across its threads (`GRAPH_REWRITES`; docs/results.md, "ORT engine speed").
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edge_runtime.bundle import EVAL_MODEL, TRAINING_MODEL

OPSET = 17
# onnxruntime-training 1.19.2 loads IR <= 10; onnx 1.17 and the exporter write <= 10 at opset 17.
MAX_IR_VERSION = 10
BN_NEXT_SUFFIX = "__next"
INPUT = "input"
LABELS = "labels"
# The gradient builder names d(loss)/d(activation) "activation_grad" itself, and ORT's Module
# takes inputs ending in "_grad" for gradient buffers: the upstream gradient is "upstream".
SPLIT_GRAD_INPUT = "upstream"


def _export(
    module: nn.Module, sample: torch.Tensor, outputs: list[str], training: bool
) -> onnx.ModelProto:
    """TorchScript-export `module` with a dynamic batch axis; parameters stay initializers."""
    buf = io.BytesIO()
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    module.train(training)
    with warnings.catch_warnings():
        # The legacy exporter warns about itself and about BatchNorm's num_batches_tracked.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (sample,),
            buf,
            input_names=[INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]},
            opset_version=OPSET,
            training=mode,
            do_constant_folding=False,
            dynamo=False,
        )
    model = onnx.load_from_string(buf.getvalue())
    _restore_state(module, saved, model)
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    return model


def _restore_state(
    module: nn.Module, saved: dict[str, torch.Tensor], model: onnx.ModelProto
) -> None:
    """Tracing in TRAINING mode runs a forward that moves BatchNorm's running statistics (and
    the initializers capture the moved values). Put the module and the graph back as they were."""
    module.load_state_dict(saved)
    for init in model.graph.initializer:
        if init.name in saved:
            init.CopyFrom(numpy_helper.from_array(saved[init.name].numpy(), init.name))


def trace_training_graph(module: nn.Module, sample: torch.Tensor) -> onnx.ModelProto:
    """The training-mode ONNX graph of an edge network, as export traces it (nothing written)."""
    return _export(module, sample, ["logits", "activation"], training=True)


def export_inference(
    module: nn.Module, sample: torch.Tensor, outputs: list[str], path: Path
) -> None:
    """Write an inference (eval mode) ONNX model of `module`."""
    model = _export(module, sample, outputs, training=False)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _expose_batchnorm_updates(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """Make each training-mode BatchNorm's running mean/var outputs graph outputs.

    Returns (parameter name, output name) pairs, in graph order.
    """
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    pairs: list[tuple[str, str]] = []
    for node in model.graph.node:
        if node.op_type != "BatchNormalization" or len(node.output) != 3:
            continue
        for slot, param in ((1, node.input[3]), (2, node.input[4])):
            if param not in dims:
                continue  # a running stat computed in-graph is not ours to update
            name = f"{param}{BN_NEXT_SUFFIX}"
            node.output[slot] = name
            model.graph.output.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, dims[param])
            )
            pairs.append((param, name))
    return pairs


def _relu_grad_as_mul(model: onnx.ModelProto) -> int:
    """Replace each ReluGrad(dY, Y) by Mul(dY, Cast(Greater(Y, 0), float)); returns how many.

    The same values wherever dY is finite (ReluGrad gives 0 where Y <= 0; so does dY * 0). An
    infinite or NaN dY where Y <= 0 gives NaN here, 0 there: a step that diverged either way.
    """
    nodes, replaced = [], 0
    for node in model.graph.node:
        if node.op_type != "ReluGrad" or node.domain != "com.microsoft":
            nodes.append(node)
            continue
        grad, forward = node.input
        base = f"{node.name}/as_mul"
        zero, mask, maskf = f"{base}/zero", f"{base}/mask", f"{base}/mask_float"
        nodes += [
            helper.make_node(
                "Constant",
                [],
                [zero],
                name=f"{base}/Constant",
                value=helper.make_tensor(zero, TensorProto.FLOAT, [], [0.0]),
            ),
            helper.make_node("Greater", [forward, zero], [mask], name=f"{base}/Greater"),
            helper.make_node("Cast", [mask], [maskf], name=f"{base}/Cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [grad, maskf], [node.output[0]], name=f"{base}/Mul"),
        ]
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return replaced


# Rewrites of the generated training model, by name; each measured in docs/results.md. A
# benchmark empties it to time ORT's own graph beside ours.
GRAPH_REWRITES = {"relu_grad_as_mul": _relu_grad_as_mul}


def _rewrite_training_model(path: Path) -> None:
    """Apply GRAPH_REWRITES to a generated training model (float32 graphs only: ours)."""
    if not GRAPH_REWRITES:
        return
    model = onnx.load(str(path))
    if model.graph.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        return
    # No onnx.checker here: ORT's training graphs hold ops of its own (MaxPoolGrad in the
    # default domain) that the checker rejects; the export's validation trains a step instead.
    if sum(rewrite(model) for rewrite in GRAPH_REWRITES.values()):
        onnx.save(model, str(path))


def _fix_eval_model(path: Path) -> None:
    """Switch BatchNorm to inference mode in the generated eval model and drop its stat outputs."""
    model = onnx.load(str(path))
    dropped: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        for attr in node.attribute:
            if attr.name == "training_mode":
                attr.i = 0
        dropped.update(o for o in node.output[1:] if o)
        del node.output[1:]
    keep = [o for o in model.graph.output if o.name not in dropped]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    onnx.save(model, str(path))


@contextlib.contextmanager
def _without_ort_info_lines() -> Iterator[None]:
    """The gradient builder inside generate_artifacts logs every graph transformer at INFO through
    a session it makes itself; keep everything on fd 2 except those lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if "[I:onnxruntime" not in line:
                    sys.stderr.write(line)


def _optimizer_block(kind: str, weight_decay: float):  # -> onnxblock.Block
    from onnxruntime.training import onnxblock

    if kind == "adamw":
        return onnxblock.optim.AdamW(weight_decay=weight_decay)
    if kind == "sgd":
        return onnxblock.optim.SGD()
    raise ValueError(f"unknown optimizer {kind!r}: use adamw or sgd")


def export_training_artifacts(
    edge_net: nn.Module,
    sample: torch.Tensor,
    out_dir: Path,
    *,
    optimizer: str,
    weight_decay: float,
) -> list[tuple[str, str]]:
    """Write training_model.onnx, eval_model.onnx, optimizer_model.onnx and checkpoint.

    `edge_net(x)` must return (logits, activation). The training loss is cross-entropy over the
    logits only; the training and eval models also output logits and activation (and the
    BatchNorm running-stat updates, training model only). Returns the BatchNorm update pairs.
    """
    import onnxruntime
    from onnxruntime.training import artifacts

    onnxruntime.set_default_logger_severity(3)

    model = _export(edge_net, sample, ["logits", "activation"], training=True)
    bn_updates = _expose_batchnorm_updates(model)
    params = [init.name for init in model.graph.initializer]
    frozen = {p for p, _ in bn_updates}
    trainable = [p for p, _ in edge_net.named_parameters() if p in params and p not in frozen]
    frozen_list = [p for p in params if p not in trainable]
    out_dir.mkdir(parents=True, exist_ok=True)
    # generate_artifacts logs every graph transformer at INFO; keep the CLI readable.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with _without_ort_info_lines():
        artifacts.generate_artifacts(
            model,
            requires_grad=trainable,
            frozen_params=frozen_list,
            loss=artifacts.LossType.CrossEntropyLoss,
            loss_input_names=["logits"],
            optimizer=_optimizer_block(optimizer, weight_decay),
            artifact_directory=str(out_dir),
            additional_output_names=["logits", "activation", *(name for _, name in bn_updates)],
        )
    _rewrite_training_model(out_dir / TRAINING_MODEL)
    _fix_eval_model(out_dir / EVAL_MODEL)
    return bn_updates


class _FrontOnly(nn.Module):
    """The front alone: what split learning trains on the board (no exit head)."""

    def __init__(self, front: nn.Module) -> None:
        super().__init__()
        self.front = front

    def forward(self, x):
        return self.front(x)


def _activation_dot_grad():  # -> onnxblock.Block
    """Loss = sum(activation * upstream): its gradient is J^T upstream, i.e. the
    backward pass of split learning with the gradient that came from the host."""
    from onnxruntime.training import onnxblock

    class ActivationDotGrad(onnxblock.Block):
        def __init__(self) -> None:
            super().__init__()
            self._grad = onnxblock.blocks.InputLike("activation")
            self._mul = onnxblock.blocks.Mul()
            self._sum = onnxblock.blocks.ReduceSum(keepdims=False)

        def build(self, activation: str) -> str:
            return self._sum(self._mul(activation, self._grad(SPLIT_GRAD_INPUT)))

    return ActivationDotGrad()


def export_split_artifacts(
    front: nn.Module, sample: torch.Tensor, out_dir: Path, *, optimizer: str, weight_decay: float
) -> list[tuple[str, str]]:
    """Training artifacts for split learning: inputs (input, upstream), outputs
    (loss, activation, BatchNorm updates). Parameter names match the hierarchical front's."""
    import onnxruntime
    from onnxruntime.training import artifacts

    onnxruntime.set_default_logger_severity(3)
    model = _export(_FrontOnly(front), sample, ["activation"], training=True)
    bn_updates = _expose_batchnorm_updates(model)
    params = [init.name for init in model.graph.initializer]
    frozen = {p for p, _ in bn_updates}
    trainable = [p for p in params if p not in frozen]
    out_dir.mkdir(parents=True, exist_ok=True)
    with _without_ort_info_lines():
        artifacts.generate_artifacts(
            model,
            requires_grad=trainable,
            frozen_params=[p for p in params if p in frozen],
            loss=_activation_dot_grad(),
            loss_input_names=["activation"],
            optimizer=_optimizer_block(optimizer, weight_decay),
            artifact_directory=str(out_dir),
            additional_output_names=["activation", *(name for _, name in bn_updates)],
        )
    _rewrite_training_model(out_dir / TRAINING_MODEL)
    _fix_eval_model(out_dir / EVAL_MODEL)
    return bn_updates
