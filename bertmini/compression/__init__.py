"""Part IV, chapter 13: making BERT smaller and faster after training.

``distillation`` trains a small student on a teacher's soft targets (Hinton et al. 2015; Sanh et al. 2019),
``quantization`` computes the Linear layers in dynamic int8, ``pruning`` scores attention heads and removes
them (Michel et al. 2019), ``export`` writes ONNX for ONNX Runtime; ``measure`` and ``report`` build the
table of size, latency and accuracy.
"""
from bertmini.compression.distillation import (
    DistillStep,
    distill,
    distillation_loss,
    hidden_state_loss,
    student_from_teacher,
    teacher_logits,
)
from bertmini.compression.export import LogitsOnly, OnnxClassifier, export_onnx
from bertmini.compression.measure import (
    Workload,
    accuracy,
    disk_mb,
    file_mb,
    latency_ms,
    make_batches,
    measure_row,
    parameter_count,
    torch_predict,
)
from bertmini.compression.pruning import head_gates, head_importance, heads_to_prune, mask_heads, prune_heads
from bertmini.compression.quantization import int8_engines, int8_linear, quantize_int8
from bertmini.compression.report import Row, markdown_table, plot_accuracy_vs_size, write_report

__all__ = ["DistillStep", "distill", "distillation_loss", "hidden_state_loss", "student_from_teacher",
           "teacher_logits", "LogitsOnly", "OnnxClassifier", "export_onnx", "Workload", "accuracy", "disk_mb",
           "file_mb", "latency_ms", "make_batches", "measure_row", "parameter_count", "torch_predict", "head_gates",
           "head_importance", "heads_to_prune", "mask_heads", "prune_heads", "int8_engines", "int8_linear",
           "quantize_int8", "Row", "markdown_table", "plot_accuracy_vs_size", "write_report"]
